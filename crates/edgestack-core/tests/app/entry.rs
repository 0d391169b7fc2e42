//! The services shape's entry Worker: forwarding over service bindings (what is and is not
//! forwarded, the region it detected, `Server-Timing` `hop` and `identity`), the identity it
//! hands `notes` (cookie, refreshed by `accounts`, or none), and what a client gets when a
//! service cannot be reached.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edgestack_core::services::identity::encode_key;
use serde_json::json;

use crate::support::{Client, Options, Shape, Stack, each_shape, signed_up_user};

const SESSION_COOKIE: &str = "__Host-edgestack_session";
const IDENTITY_COOKIE: &str = "__Host-edgestack_identity";

fn services_in(location: &'static str) -> Stack {
    Stack::new(Options { shape: Shape::Services, locations: vec![location], ..Options::default() })
}

/// A browser holding only `client`'s session cookie (a second tab after the identity expired,
/// or a device that never had one).
fn session_only(stack: &Stack, client: &Client) -> Client {
    let fresh = stack.client(stack.options.locations[0]);
    fresh.set_cookie(SESSION_COOKIE, &client.cookie(SESSION_COOKIE).unwrap());
    fresh
}

#[test]
fn notes_trust_a_signed_identity_so_most_requests_skip_the_accounts_database() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "identity@example.com");
    assert!(client.cookie(IDENTITY_COOKIE).is_some(), "sign-up hands out an identity");
    let accounts_before = stack.pipelines("accounts", None);

    let listed = stack.send(client.get("/api/notes").send());
    let read = stack.send(client.get("/api/public/notes").send());

    assert_eq!((listed.status(), read.status()), (200, 200));
    assert_eq!(listed.timing("identity"), ["cookie"]);
    assert_eq!(listed.header("x-edgestack-db-requests"), Some("1"), "the notes database only");
    assert_eq!(stack.pipelines("accounts", None), accounts_before, "no accounts round trip for reads");

    // A write has its session checked by accounts (a sign-out elsewhere stops it at once):
    // one accounts replica read beside the notes primary write.
    let created = stack.send(client.post("/api/notes").json(json!({"title": "t"})).send());
    assert_eq!(created.status(), 201, "{}", created.text());
    assert_eq!(created.timing("identity"), ["refreshed"]);
    assert_eq!(created.header("x-edgestack-db-requests"), Some("2"), "accounts (session) + notes");
    assert_eq!(stack.pipelines("accounts", None), accounts_before + 1);

    // Without the identity cookie the entry asks accounts once and hands out a new one.
    let fresh = session_only(&stack, &client);
    let refreshed = stack.send(fresh.get("/api/notes").send());
    assert_eq!(refreshed.status(), 200);
    assert_eq!(refreshed.timing("identity"), ["refreshed"]);
    assert_eq!(refreshed.header("x-edgestack-db-requests"), Some("2"), "accounts (session) + notes");
    assert!(fresh.cookie(IDENTITY_COOKIE).is_some());
    assert_eq!(refreshed.json()["notes"].as_array().unwrap().len(), 1);
    let again = stack.send(fresh.get("/api/notes").send());
    assert_eq!(again.timing("identity"), ["cookie"], "the refreshed identity is used from then on");
}

#[test]
fn the_identity_outcome_and_each_hop_are_reported_in_server_timing() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "timing@example.com");
    let fresh = session_only(&stack, &client);
    let anonymous = stack.client("na");

    let with_cookie = stack.send(client.get("/api/notes").send());
    let refreshed = stack.send(fresh.get("/api/notes").send());
    let signed_out = stack.send(anonymous.get("/api/notes").send());
    let public = stack.send(anonymous.get("/api/public/notes").send());
    let me = stack.send(client.get("/api/me").send());

    let metrics = |response: &crate::support::Response| -> Vec<String> {
        let header = response.header("server-timing").unwrap();
        header.split(',').map(|entry| entry.trim().split(';').next().unwrap().to_string()).collect()
    };
    // The service's own metrics first, then the entry's.
    assert_eq!(metrics(&with_cookie), ["cache", "db", "total", "identity", "hop"]);
    assert_eq!(metrics(&refreshed), ["cache", "db", "total", "identity", "hop"]);
    assert_eq!(refreshed.timing("identity"), ["refreshed"]);
    let identity_entry =
        refreshed.header("server-timing").unwrap().split(',').find(|e| e.contains("identity")).unwrap();
    assert!(identity_entry.contains(";dur="), "the refresh hop is timed: {identity_entry}");
    assert_eq!(signed_out.timing("identity"), ["none"]);
    assert_eq!((signed_out.status(), signed_out.error_code().as_str()), (401, "unauthenticated"));
    assert!(public.timing("identity").is_empty(), "public reads need no identity");
    assert!(me.timing("identity").is_empty(), "accounts routes need none either");
    for (response, service) in [(&with_cookie, "notes"), (&public, "notes"), (&me, "accounts")] {
        assert_eq!(response.timing("hop"), [service]);
        let hop =
            response.header("server-timing").unwrap().split(',').find(|e| e.contains("hop;")).unwrap().to_string();
        assert!(hop.contains(";dur="), "{hop}");
    }
}

#[test]
fn an_expired_identity_is_refreshed_and_a_revoked_session_gets_none() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "expiry@example.com");
    let first_identity = client.cookie(IDENTITY_COOKIE).unwrap();

    stack.advance(61_000.0);
    let after_a_minute = stack.send(client.get("/api/notes").send());
    let renewed = client.cookie(IDENTITY_COOKIE).unwrap();
    stack.send(client.delete("/api/sessions/current").send());
    // A stale tab still holding both cookies after sign-out.
    client.set_cookie(SESSION_COOKIE, "A".repeat(43).as_str());
    client.set_cookie(IDENTITY_COOKIE, &renewed);
    let signed_out = stack.send(client.get("/api/notes").send());

    assert_eq!(after_a_minute.status(), 200);
    assert_eq!(after_a_minute.timing("identity"), ["refreshed"], "identities live 60 s");
    assert_ne!(renewed, first_identity);
    assert_eq!(signed_out.status(), 401);
    assert_eq!(signed_out.timing("identity"), ["none"], "the identity is bound to another session");
    let cleared = signed_out.headers_named("set-cookie");
    assert!(
        cleared.iter().any(|c| c.starts_with(&format!("{IDENTITY_COOKIE}=")) && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
}

/// The identity cookie's `exp` (ms).
fn identity_expiry(client: &Client) -> f64 {
    let token = client.cookie(IDENTITY_COOKIE).unwrap();
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<serde_json::Value>(&payload).unwrap()["exp"].as_f64().unwrap()
}

/// The entry checks a cookie identity's expiry by its own clock, `notes` by its clock on
/// arrival, a hop later. An identity that was valid at the entry and expired on the way was
/// answered `401 unauthenticated` — which the browser app takes for a sign-out — although the
/// session is valid. The entry now has `accounts` check the session and sends a fresh identity.
#[test]
fn an_identity_that_expires_on_the_way_to_notes_is_refreshed_not_a_sign_out() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "edge@example.com");
    let note = client.create_note(&mut stack, "still mine", "");
    let expiry = identity_expiry(&client);
    stack.advance(expiry - 0.3 - stack.now_ms());

    let listed = stack.send(client.get("/api/notes").send());

    assert_eq!(listed.status(), 200, "{} {:?}", listed.text(), listed.timing("identity"));
    assert_eq!(listed.json()["notes"][0]["id"], note.as_str());
    assert_eq!(listed.timing("identity"), ["cookie", "refreshed"]);
    assert!(identity_expiry(&client) > expiry, "the browser keeps the fresh identity");
}

/// The entry stamps a request when its head arrives and reads the body after (src/http.rs:
/// up to 10 s). `accounts` signs a write's identity when the entry asks, after the body; the
/// entry checked it against the head's time, so a body that took over 5 s made the identity
/// look issued in the future: a valid write from a slow uplink answered `502 service_error`.
#[test]
fn a_write_whose_body_arrives_slowly_still_gets_a_usable_identity() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "slow-uplink@example.com");

    let created = stack.send(
        client.post("/api/notes").json(json!({"title": "sent slowly", "body": "…"})).uploaded_over(6_000.0).send(),
    );

    assert_eq!(created.status(), 201, "{}", created.text());
    assert_eq!(created.timing("identity"), ["refreshed"]);
    assert_eq!(stack.query_text("notes", "SELECT title FROM notes"), ["sent slowly"]);
}

/// What notes refuses for good (a deleted account's tombstone) costs one session check and
/// stays refused: the entry asks `accounts`, which knows no session, and clears the cookie.
#[test]
fn an_identity_notes_refuses_for_a_deleted_account_is_still_refused_after_the_check() {
    let mut stack = Stack::services();
    let owner = signed_up_user(&mut stack, "deleted@example.com");
    owner.create_note(&mut stack, "gone", "");
    let other = stack.client("na");
    let sign_in = json!({"email": "deleted@example.com", "password": crate::support::PASSWORD});
    assert_eq!(stack.send(other.post("/api/sessions").json(sign_in).send()).status(), 200);
    let deleted = stack.send(owner.delete("/api/me").json(json!({"password": crate::support::PASSWORD})).send());
    assert_eq!(deleted.status(), 204, "{}", deleted.text());
    stack.replicate();

    let read = stack.send(other.get("/api/notes").send());

    assert_eq!((read.status(), read.error_code().as_str()), (401, "unauthenticated"), "{}", read.text());
    assert_eq!(read.timing("identity"), ["cookie", "none"]);
    assert_eq!(other.cookie(IDENTITY_COOKIE), None, "cleared");
}

#[test]
fn identities_are_bound_to_their_session_and_cannot_be_planted() {
    let mut stack = Stack::services();
    let alice = signed_up_user(&mut stack, "alice@example.com");
    let bob = signed_up_user(&mut stack, "bob@example.com");
    let alice_note = alice.create_note(&mut stack, "alice's", "private");
    let alice_identity = alice.cookie(IDENTITY_COOKIE).unwrap();
    let path = format!("/api/notes/{alice_note}");

    // Bob's session with Alice's identity cookie: the entry sees it is not Bob's and refreshes.
    let bob_session = bob.cookie(SESSION_COOKIE).unwrap();
    let planted_cookie = format!("{SESSION_COOKIE}={bob_session}; {IDENTITY_COOKIE}={alice_identity}");
    let planted = stack.send(stack.client("na").get(&path).header("cookie", &planted_cookie).send());
    assert_eq!(planted.status(), 404, "Bob cannot read Alice's note: {}", planted.text());
    assert_eq!(planted.timing("identity"), ["refreshed"]);
    // A client cannot hand notes an identity header either: the entry drops it.
    let forged = stack.send(stack.client("na").get(&path).header("x-edgestack-identity", &alice_identity).send());
    assert_eq!((forged.status(), forged.error_code().as_str()), (401, "unauthenticated"));
    assert_eq!(forged.timing("identity"), ["none"]);
    // Not even beside the session it was issued for, once that session is gone (the cookie
    // would still pass for its lifetime: the documented revocation bound).
    let alice_session = alice.cookie(SESSION_COOKIE).unwrap();
    stack.send(alice.delete("/api/sessions/current").send());
    let header_only = format!("{SESSION_COOKIE}={alice_session}");
    let replayed = stack.send(
        stack
            .client("na")
            .get(&path)
            .header("cookie", &header_only)
            .header("x-edgestack-identity", &alice_identity)
            .send(),
    );
    assert_eq!(replayed.status(), 401, "a client's identity header never reaches notes: {}", replayed.text());
    let as_cookie = format!("{SESSION_COOKIE}={alice_session}; {IDENTITY_COOKIE}={alice_identity}");
    let within_bound = stack.send(stack.client("na").get(&path).header("cookie", &as_cookie).send());
    assert_eq!(within_bound.status(), 200, "the identity cookie is honoured until it expires");
    stack.advance(61_000.0);
    let expired = stack.send(stack.client("na").get(&path).header("cookie", &as_cookie).send());
    assert_eq!(expired.status(), 401, "and not a moment longer");
}

#[test]
fn the_entry_forwards_the_region_it_detected_not_the_clients() {
    // Development: the client's override header picks the region, and notes reads nearby.
    let mut stack = services_in("na");
    let author = signed_up_user(&mut stack, "regions@example.com");
    let id = author.publish_note(&mut stack, "near", "");
    stack.advance(100.0);
    let in_ap = stack.client_in_region("ap");
    let read = stack.send(in_ap.get(&format!("/api/public/notes/{id}")).send());
    assert_eq!(read.db_targets(), ["replica-ap"]);

    // Production: the entry ignores the client's header and names its own location's region,
    // which the services trust; a client cannot pick a replica.
    let vars = vec![("EDGESTACK_ENV", "production".to_string())];
    let mut stack = Stack::new(Options { shape: Shape::Services, locations: vec!["eu"], vars, ..Options::default() });
    let author = signed_up_user(&mut stack, "production@example.com");
    let id = author.publish_note(&mut stack, "near", "");
    stack.advance(100.0);
    let pretending = stack.client("eu").in_region("ap");
    let read = stack.send(pretending.get(&format!("/api/public/notes/{id}")).send());
    let health = stack.send(pretending.get("/api/health").send()).json();
    assert_eq!(read.db_targets(), ["replica-eu"], "the entry's region, not the client's");
    assert_eq!(health["region"]["name"], "eu");
    assert_eq!(health["region"]["source"], "cloudflare");
}

#[test]
fn the_entry_forwards_the_query_body_cookies_and_validators() {
    let mut stack = Stack::services();
    let author = signed_up_user(&mut stack, "forward@example.com");
    for n in 0..3 {
        author.publish_note(&mut stack, &format!("n{n}"), "");
    }
    let reader = stack.client("na");

    let one = stack.send(reader.get("/api/public/notes?limit=1").send());
    let revalidated =
        stack.send(reader.get("/api/public/notes?limit=1").header("if-none-match", one.header("etag").unwrap()).send());
    let edited = stack.send(
        author
            .patch(&format!("/api/notes/{}", one.json()["notes"][0]["id"].as_str().unwrap()))
            .json(json!({"body": "forwarded body"}))
            .send(),
    );

    assert_eq!(one.json()["notes"].as_array().unwrap().len(), 1, "the query string reached notes");
    assert!(one.json()["next_cursor"].is_string());
    assert_eq!(revalidated.status(), 304, "If-None-Match reached notes");
    assert_eq!(edited.status(), 200, "{}", edited.text());
    assert_eq!(edited.json()["note"]["body"], "forwarded body", "the body and content type reached notes");
}

#[test]
fn with_the_accounts_binding_gone_private_notes_routes_answer_503_not_401() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "unreachable@example.com");
    let fresh = session_only(&stack, &client);
    stack.front().bindings.borrow_mut().remove("ACCOUNTS");

    let needs_refresh = stack.send(fresh.get("/api/notes").send());
    let with_cookie = stack.send(client.get("/api/notes").send());
    let me = stack.send(client.get("/api/me").send());

    assert_eq!((needs_refresh.status(), needs_refresh.error_code().as_str()), (503, "service_unavailable"));
    assert_eq!(needs_refresh.header("retry-after"), Some("5"));
    assert_eq!(with_cookie.status(), 200, "a valid identity cookie needs no accounts hop");
    assert_eq!((me.status(), me.error_code().as_str()), (503, "service_unavailable"));
    assert!(!stack.logs_containing("identity refresh failed").is_empty());
}

#[test]
fn with_the_accounts_database_down_an_identity_refresh_answers_503_not_401() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "dbdown@example.com");
    let fresh = session_only(&stack, &client);
    for replica in [None, Some("eu"), Some("ap")] {
        stack.net.set_fault("accounts", replica, crate::support::EndpointFault { down: true, ..Default::default() });
    }

    let response = stack.send(fresh.get("/api/notes").send());

    assert_eq!(
        (response.status(), response.error_code().as_str()),
        (503, "database_unavailable"),
        "accounts' own answer"
    );
    assert_eq!(response.header("retry-after"), Some("5"));
    assert!(fresh.cookie(SESSION_COOKIE).is_some(), "the client is not signed out");
}

#[test]
fn with_the_notes_binding_gone_notes_routes_answer_503() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "nonotes@example.com");
    stack.front().bindings.borrow_mut().remove("NOTES");

    for path in ["/api/notes", "/api/public/notes"] {
        let response = stack.send(client.get(path).send());
        assert_eq!((response.status(), response.error_code().as_str()), (503, "service_unavailable"), "{path}");
        assert_eq!(response.header("retry-after"), Some("5"));
    }
    assert_eq!(stack.send(client.get("/api/me").send()).status(), 200, "accounts is still reached");
}

/// docs/edge-data-path.md: every API response reports `Server-Timing` (`cache`, `total`) and
/// `x-edgestack-db-requests`. The entry's own answers when a service call fails — an
/// unreachable service's 503, an unusable identity answer's 502 — carried neither, in the
/// outage where the hop's timing is what an operator needs.
#[test]
fn the_entrys_own_failures_report_server_timing_and_a_round_trip_count() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "timed-failure@example.com");
    let fresh = session_only(&stack, &client);
    let check = |what: &str, response: &crate::support::Response, status: u16, identity: &[&str]| {
        assert_eq!(response.status(), status, "{what}: {}", response.text());
        let timing = response.header("server-timing").unwrap_or_else(|| panic!("{what}: no Server-Timing"));
        assert!(timing.contains("cache;desc=") && timing.contains("total;dur="), "{what}: {timing}");
        assert!(timing.contains("hop;desc="), "{what}: {timing}");
        assert_eq!(response.timing("identity"), identity, "{what}: {timing}");
        // The identity refresh's accounts request is counted, its endpoint not named: at least.
        assert!(response.db_requests() as usize >= response.db_targets().len(), "{what}: {timing}");
    };

    let notes = stack.service("notes");
    stack.front().bindings.borrow_mut().remove("NOTES");
    check("notes unreachable", &stack.send(client.get("/api/notes").send()), 503, &["cookie"]);
    stack.front().bindings.borrow_mut().insert("NOTES", notes.clone());
    let accounts = stack.service("accounts");
    stack.front().bindings.borrow_mut().remove("ACCOUNTS");
    check("accounts unreachable", &stack.send(fresh.get("/api/notes").send()), 503, &["failed"]);
    check("me, accounts unreachable", &stack.send(client.get("/api/me").send()), 503, &[]);
    stack.front().bindings.borrow_mut().insert("ACCOUNTS", notes);
    check("identity answer unusable", &stack.send(fresh.get("/api/notes").send()), 502, &["failed"]);
    stack.front().bindings.borrow_mut().insert("ACCOUNTS", accounts);
    check("control", &stack.send(fresh.get("/api/notes").send()), 200, &["refreshed"]);
}

/// docs/api.md: a malformed `If-Match` is `400 invalid_if_match` "checked before anything else",
/// and a bad `limit` or body is a 400 — also in the services shape while `accounts` cannot issue
/// the caller's identity, which once answered them `503 database_unavailable` with
/// `Retry-After`: a client told to retry a request that can never succeed.
#[test]
fn malformed_requests_are_400_whatever_the_accounts_database_is_doing() {
    use crate::support::EndpointFault;
    each_shape(|mut stack| {
        let client = signed_up_user(&mut stack, "down@example.com");
        let id = client.create_note(&mut stack, "t", "b");
        // A session whose identity cookie has expired (it lives a minute), as most are.
        client.forget_cookie("__Host-edgestack_identity");
        let accounts = stack.accounts_db();
        for replica in [None, Some("eu"), Some("ap")] {
            stack.net.set_fault(accounts, replica, EndpointFault { down: true, ..Default::default() });
        }
        let shape = stack.options.shape;
        for (call, expected) in [
            (
                client.patch(&format!("/api/notes/{id}")).header("if-match", "garbage").json(json!({"title": "x"})),
                "invalid_if_match",
            ),
            (client.get(&format!("/api/notes/{id}")).header("if-match", "garbage"), "invalid_if_match"),
            (client.delete(&format!("/api/notes/{id}")).header("if-match", "garbage"), "invalid_if_match"),
            (client.get("/api/notes?limit=0"), "invalid_limit"),
            (client.post("/api/notes").header("content-type", "application/json").body(b"{nope"), "invalid_json"),
            (client.post("/api/notes").json(json!({"title": ""})), "invalid_title"),
        ] {
            let response = stack.send(call.send());
            assert_eq!(
                (response.status(), response.error_code().as_str()),
                (400, expected),
                "{shape:?}: {}",
                response.text()
            );
        }
        // A well-formed request still gets the outage, never the 401 `notes` gives a request
        // without an identity: the client is signed in, and told to retry.
        for call in [client.get(&format!("/api/notes/{id}")), client.post("/api/notes").json(json!({"title": "ok"}))] {
            let response = stack.send(call.send());
            assert_eq!((response.status(), response.error_code().as_str()), (503, "database_unavailable"), "{shape:?}");
            assert!(response.header("retry-after").is_some(), "{shape:?}");
        }
    });
}

/// `accounts` signs with a key the entry and `notes` do not hold (a key rotated on one side
/// only, or any answer of `accounts` that is JSON but not a usable identity). The session is
/// valid: the client must not be told it is signed out (`401`), and the entry must not plant a
/// cookie it cannot verify itself — the service gave an unexpected answer (`502 service_error`).
#[test]
fn an_identity_the_entry_cannot_verify_is_a_502_not_a_sign_out() {
    let mut stack = Stack::services();
    stack.service("accounts").set_var("IDENTITY_SIGNING_KEY", &encode_key(&[9; 32]));
    let client = signed_up_user(&mut stack, "rotated@example.com");
    client.forget_cookie(IDENTITY_COOKIE);

    let read = stack.send(client.get("/api/notes").send());
    let write = stack.send(client.post("/api/notes").json(json!({"title": "t"})).send());
    let me = stack.send(client.get("/api/me").send());

    assert_eq!(me.status(), 200, "the session itself is valid");
    for (what, response) in [("read", &read), ("write", &write)] {
        assert_eq!(
            (response.status(), response.error_code().as_str()),
            (502, "service_error"),
            "{what}: {} {:?}",
            response.text(),
            response.timing("identity")
        );
        assert!(
            !response.headers_named("set-cookie").iter().any(|c| c.starts_with(&format!("{IDENTITY_COOKIE}=ey"))),
            "{what}: the entry hands out an identity it cannot verify: {:?}",
            response.headers_named("set-cookie")
        );
    }
    assert_eq!(stack.query_text("notes", "SELECT title FROM notes"), Vec::<String>::new());
}

/// The other half of a key rotated on one side only: the entry and `accounts` agree, `notes`
/// holds another public key. Every identity the entry verified and forwarded was refused by
/// `notes` as `401 unauthenticated` — every signed-in client told it is signed out (the browser
/// app ends its session), and a canary of `notes` with the wrong key passed the release gate,
/// which counts 5xx. `notes` only ever gets identities the entry verified, so one whose
/// signature (or form, type, audience) it refuses is its configuration's fault: `500
/// misconfigured`, logged; the session is untouched.
#[test]
fn an_identity_notes_cannot_verify_is_a_500_not_a_sign_out() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "half-rotated@example.com");
    let note = client.create_note(&mut stack, "kept", "");
    let other_key = edgestack_core::services::identity::IdentitySigner::from_seed(&[9; 32]).verifying_key();
    stack.service("notes").set_var("IDENTITY_PUBLIC_KEY", &encode_key(&other_key));

    let read = stack.send(client.get("/api/notes").send());
    let write = stack.send(client.patch(&format!("/api/notes/{note}")).json(json!({"title": "changed"})).send());

    for (what, response) in [("read", &read), ("write", &write)] {
        assert_eq!(
            (response.status(), response.error_code().as_str()),
            (500, "misconfigured"),
            "{what}: {} {:?}",
            response.text(),
            response.timing("identity")
        );
    }
    assert_eq!(stack.query_text("notes", "SELECT title FROM notes"), ["kept"]);
    assert!(!stack.logs_containing("IDENTITY_PUBLIC_KEY").is_empty());
    assert!(client.cookie(SESSION_COOKIE).is_some());
    assert_eq!(stack.send(client.get("/api/me").send()).status(), 200, "the session itself is valid");
}

/// The identity call answered with a 4xx other than 401 (an `accounts` that does not serve the
/// entry's internal API version, or a binding to a Worker without the route): the client's
/// request was fine, so it must not get that 4xx (`404 not_found` for its own notes list).
#[test]
fn a_4xx_answer_to_the_identity_call_is_a_502_not_the_clients_error() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "skew@example.com");
    client.forget_cookie(IDENTITY_COOKIE);
    let notes = stack.service("notes");
    stack.front().bindings.borrow_mut().insert("ACCOUNTS", notes);

    let read = stack.send(client.get("/api/notes").send());

    assert_eq!((read.status(), read.error_code().as_str()), (502, "service_error"), "{}", read.text());
}

/// A browser keeps one `__Host-` identity cookie. A client that sends hundreds, each with a
/// well-formed signature, makes the entry run an Ed25519 verification per cookie on every
/// request, without signing in (any 43-character session value will do). The entry should
/// look at no more than the first few: the identity behind 300 forged ones is not searched for.
#[test]
fn the_entry_verifies_a_bounded_number_of_identity_cookies() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "many@example.com");
    let session = client.cookie(SESSION_COOKIE).unwrap();
    let real = client.cookie(IDENTITY_COOKIE).unwrap();
    // Any payload: the signature is checked (a full Ed25519 verification) before it is read.
    let forged = format!("e30.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    let mut cookie = format!("{SESSION_COOKIE}={session}");
    for _ in 0..300 {
        cookie.push_str(&format!("; {IDENTITY_COOKIE}={forged}"));
    }
    cookie.push_str(&format!("; {IDENTITY_COOKIE}={real}"));
    let response = stack.send(stack.client("na").get("/api/notes").header("cookie", &cookie).send());

    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(
        response.timing("identity"),
        ["refreshed"],
        "the entry verified every one of 301 identity cookies to find the last"
    );
}

/// The runtime puts no wall-clock limit on a request while its client waits, so a service that
/// hangs (here `notes`, then `accounts`, answering a minute late) would hold every request
/// that reaches it. The entry gives each call up at `SERVICE_DEADLINE_MS` (default 20 s) with
/// the answer an unreachable service gets, and its health reports the service unreachable.
#[test]
fn a_service_that_does_not_answer_is_given_up_at_the_service_deadline() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "hung@example.com");
    let fresh = session_only(&stack, &client);
    let timed = |stack: &mut Stack, call: crate::support::Call| {
        let started = stack.now_ms();
        let response = stack.send(call.send());
        (response, stack.now_ms() - started)
    };
    stack.service("notes").set_var("EDGESTACK_INJECT_FAULT", "slow:60000");

    for call in [client.get("/api/public/notes"), client.post("/api/notes").json(json!({"title": "never stored"}))] {
        let (response, elapsed) = timed(&mut stack, call);
        assert_eq!((response.status(), response.error_code().as_str()), (503, "service_unavailable"));
        assert_eq!(response.header("retry-after"), Some("5"));
        assert!((20_000.0..20_100.0).contains(&elapsed), "given up after {elapsed} ms");
    }
    assert_eq!(stack.logs_containing("notes service call failed: no answer within 20000 ms").len(), 2);
    let (health, elapsed) = timed(&mut stack, client.get("/api/health"));
    assert_eq!(health.status(), 200);
    assert_eq!(health.json()["services"]["notes"]["status"], "unreachable", "{}", health.text());
    assert_eq!(health.json()["services"]["accounts"]["status"], "ok", "{}", health.text());
    assert!((20_000.0..20_100.0).contains(&elapsed), "health waited {elapsed} ms");

    // Both probed at once: two services that hang cost the health check one deadline.
    stack.service("accounts").set_var("EDGESTACK_INJECT_FAULT", "slow:60000");
    let (health, elapsed) = timed(&mut stack, client.get("/api/health"));
    assert_eq!(health.json()["services"]["accounts"]["status"], "unreachable", "{}", health.text());
    assert_eq!(health.json()["services"]["notes"]["status"], "unreachable", "{}", health.text());
    assert!((20_000.0..20_100.0).contains(&elapsed), "health waited {elapsed} ms");
    stack.service("accounts").set_var("EDGESTACK_INJECT_FAULT", "");

    stack.front().set_var("SERVICE_DEADLINE_MS", "1500");
    let (response, elapsed) = timed(&mut stack, client.get("/api/notes"));
    assert_eq!(response.status(), 503);
    assert!((1_500.0..1_600.0).contains(&elapsed), "given up after {elapsed} ms");

    // The identity refresh is a call to `accounts` like any other.
    stack.service("notes").set_var("EDGESTACK_INJECT_FAULT", "");
    stack.service("accounts").set_var("EDGESTACK_INJECT_FAULT", "slow:60000");
    let (refresh, elapsed) = timed(&mut stack, fresh.get("/api/notes"));
    assert_eq!((refresh.status(), refresh.error_code().as_str()), (503, "service_unavailable"), "{}", refresh.text());
    assert!((1_500.0..1_600.0).contains(&elapsed), "given up after {elapsed} ms");
    assert!(!stack.logs_containing("identity refresh failed: no answer within 1500 ms").is_empty());

    stack.service("accounts").set_var("EDGESTACK_INJECT_FAULT", "");
    let listed = stack.send(fresh.get("/api/notes").send());
    assert_eq!(listed.status(), 200, "nothing was left stuck: {}", listed.text());
    assert_eq!(listed.json()["notes"], json!([]), "the write held back by the fault never ran");
}
