//! Internal routes (`/internal/*`) stay internal: the single Worker and the entry refuse them
//! with the API's JSON 404 and never forward them; `accounts` and `notes` answer only their own,
//! and only to a request naming an internal API version they serve (service bindings carry it).
//! Also the internal handlers themselves: identity issuing, a service's health, and the
//! idempotent deletion of a deleted account's notes.

use serde_json::json;

use crate::support::{Client, Stack, signed_up_user};

const VERSION_HEADER: &str = "x-edgestack-internal-api";

/// Every internal route, each with a plausible request.
fn internal_routes(user_id: &str) -> [(&'static str, String); 3] {
    [
        ("POST", "/internal/identity".to_string()),
        ("GET", "/internal/health".to_string()),
        ("DELETE", format!("/internal/users/{user_id}/notes")),
    ]
}

#[test]
fn the_single_worker_refuses_every_internal_route_with_the_api_json_404() {
    let mut stack = Stack::monolith();
    let user = signed_up_user(&mut stack, "internal@example.com");
    let user_id = user.user_id(&mut stack);
    user.create_note(&mut stack, "kept", "");
    let pipelines_before = stack.pipelines("main", None);

    for (method, path) in internal_routes(&user_id) {
        for version in [None, Some("1")] {
            let mut call = user.bare(method, &path).header("x-edgestack-client", "1");
            if let Some(version) = version {
                call = call.header(VERSION_HEADER, version);
            }
            let response = stack.send(call.send());
            assert_eq!(
                (response.status(), response.error_code().as_str()),
                (404, "not_found"),
                "{method} {path} {version:?}"
            );
            assert_eq!(response.db_requests(), 0, "{method} {path}");
        }
    }
    assert_eq!(stack.pipelines("main", None), pipelines_before, "no internal handler ran");
    assert_eq!(stack.query_text("main", "SELECT title FROM notes"), ["kept"]);
}

#[test]
fn the_entry_refuses_every_internal_route_and_forwards_none() {
    let mut stack = Stack::services();
    let user = signed_up_user(&mut stack, "entry-internal@example.com");
    let user_id = user.user_id(&mut stack);
    user.create_note(&mut stack, "kept", "");
    let before = (stack.pipelines("accounts", None), stack.pipelines("notes", None));

    for (method, path) in internal_routes(&user_id) {
        for version in [None, Some("1")] {
            let mut call = user.bare(method, &path).header("x-edgestack-client", "1");
            if let Some(version) = version {
                call = call.header(VERSION_HEADER, version);
            }
            let response = stack.send(call.send());
            assert_eq!(
                (response.status(), response.error_code().as_str()),
                (404, "not_found"),
                "{method} {path} {version:?}"
            );
            assert!(response.timing("hop").is_empty(), "{method} {path} was forwarded");
            assert!(!response.text().contains("identity\""), "{method} {path}: {}", response.text());
            assert!(response.header("set-cookie").is_none(), "{method} {path}");
        }
    }
    assert_eq!((stack.pipelines("accounts", None), stack.pipelines("notes", None)), before, "no service was reached");
    assert_eq!(stack.query_text("notes", "SELECT title FROM notes"), ["kept"]);
    assert_eq!(stack.query_text("notes", "SELECT user_id FROM deleted_owners"), Vec::<String>::new());
}

/// `service` as another Worker's binding reaches it: with the user's cookies, no CSRF header.
fn binding_call(
    stack: &Stack,
    service: &str,
    user: Option<&Client>,
    method: &'static str,
    path: &str,
) -> crate::support::Call {
    let client = stack.client_of(stack.service(service));
    if let Some(user) = user {
        client.set_cookie("__Host-edgestack_session", &user.cookie("__Host-edgestack_session").unwrap());
    }
    client.bare(method, path)
}

fn check_version(stack: &mut Stack, user: &Client, version: Option<&str>, expected: (u16, Option<&str>)) {
    let mut call = binding_call(stack, "accounts", Some(user), "POST", "/internal/identity");
    if let Some(version) = version {
        call = call.header(VERSION_HEADER, version);
    }
    let response = stack.send(call.send());
    let code = (response.status() >= 400).then(|| response.error_code());
    assert_eq!((response.status(), code.as_deref()), expected, "{VERSION_HEADER}: {version:?}");
}

#[test]
fn services_answer_internal_routes_only_with_a_supported_internal_api_version() {
    let mut stack = Stack::services();
    let user = signed_up_user(&mut stack, "version@example.com");

    check_version(&mut stack, &user, Some("1"), (200, None));
    check_version(&mut stack, &user, Some(" 1 "), (200, None));
    check_version(&mut stack, &user, None, (400, Some("unsupported_internal_api")));
    check_version(&mut stack, &user, Some(""), (400, Some("unsupported_internal_api")));
    check_version(&mut stack, &user, Some("2"), (400, Some("unsupported_internal_api")));
    check_version(&mut stack, &user, Some("0"), (400, Some("unsupported_internal_api")));
    check_version(&mut stack, &user, Some("v1"), (400, Some("unsupported_internal_api")));
}

#[test]
fn each_service_answers_only_its_own_routes() {
    let mut stack = Stack::services();
    let user = signed_up_user(&mut stack, "owners@example.com");
    let user_id = user.user_id(&mut stack);
    for (service, method, path, expected) in [
        ("accounts", "DELETE", format!("/internal/users/{user_id}/notes"), 404),
        ("notes", "POST", "/internal/identity".to_string(), 404),
        ("notes", "GET", "/api/me".to_string(), 404),
        ("accounts", "GET", "/api/public/notes".to_string(), 404),
        ("accounts", "GET", "/api/health".to_string(), 404),
        ("accounts", "GET", "/internal/health".to_string(), 200),
        ("notes", "GET", "/internal/health".to_string(), 200),
    ] {
        let call = binding_call(&stack, service, Some(&user), method, &path).header(VERSION_HEADER, "1");
        let response = stack.send(call.header("x-edgestack-client", "1").send());
        assert_eq!(response.status(), expected, "{service}: {method} {path}: {}", response.text());
        if expected == 404 {
            assert_eq!(response.error_code(), "not_found");
        }
    }
    assert_eq!(stack.query_text("notes", "SELECT user_id FROM deleted_owners"), Vec::<String>::new());
}

#[test]
fn a_service_health_reports_its_own_database() {
    let mut stack = Stack::services();
    for service in ["accounts", "notes"] {
        let call = binding_call(&stack, service, None, "GET", "/internal/health").header(VERSION_HEADER, "1");
        let health = stack.send(call.send());
        assert_eq!(health.status(), 200);
        assert_eq!(health.json()["database"], "configured", "{service}");
        assert_eq!(health.json()["status"], "ok", "{service}");
    }
}

#[test]
fn accounts_issues_an_identity_only_for_a_live_session() {
    let mut stack = Stack::services();
    let user = signed_up_user(&mut stack, "issue@example.com");
    let user_id = user.user_id(&mut stack);
    let issue = |stack: &mut Stack, user: Option<&Client>| {
        let call = binding_call(stack, "accounts", user, "POST", "/internal/identity").header(VERSION_HEADER, "1");
        stack.send(call.send())
    };

    let issued = issue(&mut stack, Some(&user));
    let anonymous = issue(&mut stack, None);

    assert_eq!(issued.status(), 200, "{}", issued.text());
    let body = issued.json();
    assert_eq!(body["lifetime_ms"], 60_000);
    let token = body["identity"].as_str().unwrap();
    // The entry and notes verify it with the public key, for this session only.
    let config = stack.front().config().unwrap();
    let verifier = config.identity_verifier.as_ref().unwrap();
    let session_hash = edgestack_core::accounts::SessionToken::parse(&user.cookie("__Host-edgestack_session").unwrap())
        .unwrap()
        .hash();
    let now = stack.now_ms() as i64;
    let identity = verifier.verify_for_session(token, &session_hash, now).unwrap();
    assert_eq!(identity.user_id, user_id);
    assert!(verifier.verify_for_session(token, "another session", now).is_err());
    assert_eq!((anonymous.status(), anonymous.error_code().as_str()), (401, "unauthenticated"));

    let session = user.cookie("__Host-edgestack_session").unwrap();
    stack.send(user.delete("/api/sessions/current").send());
    let after_sign_out = stack.client_of(stack.service("accounts"));
    after_sign_out.set_cookie("__Host-edgestack_session", &session);
    let after_sign_out =
        stack.send(after_sign_out.bare("POST", "/internal/identity").header(VERSION_HEADER, "1").send());
    assert_eq!((after_sign_out.status(), after_sign_out.error_code().as_str()), (401, "unauthenticated"));
}

#[test]
fn the_identity_lifetime_follows_a_short_session_activity_interval() {
    let vars = vec![("SESSION_IDLE_SECONDS", "80".to_string())];
    let mut stack =
        Stack::new(crate::support::Options { shape: crate::support::Shape::Services, vars, ..Default::default() });
    let user = signed_up_user(&mut stack, "short@example.com");

    let call = binding_call(&stack, "accounts", Some(&user), "POST", "/internal/identity").header(VERSION_HEADER, "1");
    let issued = stack.send(call.send());

    assert_eq!(issued.json()["lifetime_ms"], 10_000, "idle 80 s records activity every 10 s");
}

#[test]
fn deleting_a_users_notes_is_idempotent_and_refuses_their_identity_from_then_on() {
    let mut stack = Stack::services();
    let user = signed_up_user(&mut stack, "tombstone@example.com");
    let user_id = user.user_id(&mut stack);
    let public = user.publish_note(&mut stack, "public", "");
    user.create_note(&mut stack, "private", "");
    let other = signed_up_user(&mut stack, "bystander@example.com");
    let kept = other.create_note(&mut stack, "kept", "");
    assert_eq!(stack.send(stack.client("na").get(&format!("/api/public/notes/{public}")).send()).status(), 200);
    let delete = |stack: &mut Stack| {
        let path = format!("/internal/users/{user_id}/notes");
        let call = binding_call(stack, "notes", None, "DELETE", &path).header(VERSION_HEADER, "1");
        stack.send(call.send())
    };

    let first = delete(&mut stack);
    let second = delete(&mut stack);

    assert_eq!((first.status(), first.json()), (200, json!({"deleted_notes": 2})));
    assert_eq!((second.status(), second.json()), (200, json!({"deleted_notes": 0})), "a redelivery finds nothing");
    assert_eq!(stack.query_text("notes", "SELECT id FROM notes"), [kept]);
    assert_eq!(stack.query_text("notes", "SELECT user_id FROM deleted_owners"), [user_id]);
    let public_copy = stack.send(stack.client("na").get(&format!("/api/public/notes/{public}")).send());
    assert_eq!(public_copy.status(), 404, "its cache entry went too ({})", public_copy.cache_status());
    // The account itself still exists here (accounts deletes it first in real use), so its
    // identity is still valid — the cookie's for a read (then, refused, a freshly checked one),
    // a freshly checked one for a write: the tombstone alone refuses both.
    let write = stack.send(user.post("/api/notes").json(json!({"title": "from beyond"})).send());
    assert_eq!(write.timing("identity"), ["refreshed"]);
    assert_eq!(write.status(), 401, "{}", write.text());
    let list = stack.send(user.get("/api/notes").send());
    assert_eq!(list.timing("identity"), ["cookie", "refreshed"]);
    assert_eq!(list.status(), 401);
}
