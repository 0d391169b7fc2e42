//! Sign-up, sign-in, sign-out, `me`, password change, session lifetimes and account deletion, in
//! both shapes (accounts behind the entry in the services shape). Sign-in limits, common
//! passwords and sign-up limits: `abuse.rs`.

use serde_json::{Value, json};

use crate::support::{Client, PASSWORD, Response, Shape, Stack, each_shape, signed_up_user};

const SESSION_COOKIE: &str = "__Host-edgestack_session";
const IDENTITY_COOKIE: &str = "__Host-edgestack_identity";

fn sign_up(stack: &mut Stack, client: &Client, email: &str, password: &str) -> Response {
    stack.send(client.post("/api/accounts").json(json!({"email": email, "password": password})).send())
}

fn sign_in(stack: &mut Stack, client: &Client, email: &str, password: &str) -> Response {
    stack.send(client.post("/api/sessions").json(json!({"email": email, "password": password})).send())
}

/// Signs in from a new browser naming `region` in the development region header.
fn sign_in_anew(stack: &mut Stack, region: &'static str, email: &str, password: &str) -> Response {
    let browser = stack.client_in_region(region);
    sign_in(stack, &browser, email, password)
}

fn me_status(stack: &mut Stack, client: &Client) -> u16 {
    stack.send(client.get("/api/me").send()).status()
}

fn set_cookie_named<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers_named("set-cookie").into_iter().find(|cookie| cookie.starts_with(&format!("{name}=")))
}

#[test]
fn sign_up_sets_a_host_only_secure_cookie_and_signs_in() {
    each_shape(|mut stack| {
        let client = stack.client("na");

        let response = sign_up(&mut stack, &client, "Ada@Example.com", PASSWORD);

        assert_eq!(response.status(), 201, "{}", response.text());
        let user = &response.json()["user"];
        assert_eq!(user["email"], "ada@example.com");
        assert_eq!(user["id"].as_str().map(str::len), Some(22), "{user}");
        assert!(user["created_at"].as_i64().is_some(), "{user}");
        let cookie = set_cookie_named(&response, SESSION_COOKIE).unwrap();
        for attribute in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax", "; Max-Age="] {
            assert!(cookie.contains(attribute), "{attribute} missing in {cookie}");
        }
        assert!(!cookie.to_ascii_lowercase().contains("domain="), "host-only: {cookie}");
        let token = client.cookie(SESSION_COOKIE).unwrap();
        assert_eq!(token.len(), 43, "256-bit token, base64url");
        let me = stack.send(client.get("/api/me").send());
        assert_eq!(me.status(), 200);
        assert_eq!(me.json()["user"], *user);
        // Only the hash of the token is stored.
        let stored = stack.query_text(stack.accounts_db(), "SELECT token_hash FROM sessions");
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0], token);
        // The services shape hands out the identity for notes at once; one Worker needs none.
        let identity = set_cookie_named(&response, IDENTITY_COOKIE);
        assert_eq!(identity.is_some(), stack.options.shape == Shape::Services, "{identity:?}");
    });
}

fn check_sign_up(stack: &mut Stack, body: Value, expected: (u16, &str)) {
    let client = stack.client("na");
    let response = stack.send(client.post("/api/accounts").json(body.clone()).send());
    assert_eq!((response.status(), response.error_code().as_str()), expected, "{body}");
    assert!(client.cookie(SESSION_COOKIE).is_none(), "{body}");
}

#[test]
fn sign_up_validates_input_and_refuses_duplicates() {
    each_shape(|mut stack| {
        check_sign_up(&mut stack, json!({"email": "not-an-email", "password": PASSWORD}), (400, "invalid_email"));
        // The micro sign shows as μ but does not lower-case to it: a look-alike of μ@…'s account.
        check_sign_up(&mut stack, json!({"email": "\u{b5}@example.com", "password": PASSWORD}), (400, "invalid_email"));
        check_sign_up(&mut stack, json!({"email": "a@example.com", "password": "short"}), (400, "weak_password"));
        check_sign_up(
            &mut stack,
            json!({"email": "a@example.com", "password": "x".repeat(129)}),
            (400, "weak_password"),
        );
        check_sign_up(&mut stack, json!({"email": "a@example.com"}), (400, "invalid_body"));
        check_sign_up(
            &mut stack,
            json!({"email": "a@example.com", "password": PASSWORD, "admin": true}),
            (400, "invalid_body"),
        );
        check_sign_up(&mut stack, json!({"email": 5, "password": PASSWORD}), (400, "invalid_body"));
        check_sign_up(&mut stack, json!(null), (400, "invalid_body"));
        let client = stack.client("na");
        let plain = stack.send(client.post("/api/accounts").header("content-type", "text/plain").body(b"{}").send());
        assert_eq!((plain.status(), plain.error_code().as_str()), (415, "unsupported_media_type"));
        let empty = stack.send(client.post("/api/accounts").header("content-type", "application/json").send());
        assert_eq!((empty.status(), empty.error_code().as_str()), (400, "empty_body"));
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT email FROM users"), Vec::<String>::new());

        assert_eq!(sign_up(&mut stack, &client, "dup@example.com", PASSWORD).status(), 201);
        let again = {
            let another = stack.client("na");
            sign_up(&mut stack, &another, "DUP@example.com", PASSWORD)
        };
        assert_eq!((again.status(), again.error_code().as_str()), (409, "email_taken"));
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT email FROM users"), ["dup@example.com"]);
    });
}

/// "Zoë" typed as `o` + U+0308 (as macOS file names and some keyboards give it) and as the one
/// code point U+00EB: two strings, one address.
const DECOMPOSED: &str = "Zoe\u{308}@Example.com";
const COMPOSED: &str = "zo\u{eb}@example.com";

#[test]
fn an_address_typed_composed_or_decomposed_is_one_account() {
    each_shape(|mut stack| {
        let client = stack.client("na");
        let first = sign_up(&mut stack, &client, DECOMPOSED, PASSWORD);
        assert_eq!(first.status(), 201, "{}", first.text());
        assert_eq!(first.json()["user"]["email"], COMPOSED, "stored and answered in NFC");

        let another = stack.client("na");
        let look_alike = sign_up(&mut stack, &another, COMPOSED, PASSWORD);
        assert_eq!((look_alike.status(), look_alike.error_code().as_str()), (409, "email_taken"));
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT email FROM users"), [COMPOSED]);

        for typed in [COMPOSED, DECOMPOSED, " ZO\u{cb}@EXAMPLE.COM "] {
            let signed_in = sign_in_anew(&mut stack, "na", typed, PASSWORD);
            assert_eq!(signed_in.status(), 200, "{typed:?}: {}", signed_in.text());
            assert_eq!(signed_in.json()["user"], first.json()["user"], "{typed:?}");
        }
    });
}

/// A domain beyond ASCII has two spellings, its U-label (`école.fr`, as typed) and its A-label
/// (`xn--cole-9oa.fr`, what DNS knows and what a browser's email field sends): one mailbox, so
/// one account, stored under the A-label.
#[test]
fn an_address_whose_domain_is_typed_as_a_u_label_or_an_a_label_is_one_account() {
    const A_LABEL: &str = "ada@xn--cole-9oa.fr";
    each_shape(|mut stack| {
        let client = stack.client("na");
        let first = sign_up(&mut stack, &client, "Ada@\u{c9}cole.fr", PASSWORD);
        assert_eq!(first.status(), 201, "{}", first.text());
        assert_eq!(first.json()["user"]["email"], A_LABEL);

        let another = stack.client("na");
        let same_mailbox = sign_up(&mut stack, &another, "ada@XN--COLE-9OA.fr", PASSWORD);
        assert_eq!((same_mailbox.status(), same_mailbox.error_code().as_str()), (409, "email_taken"));
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT email FROM users"), [A_LABEL]);

        for typed in [A_LABEL, "ada@\u{e9}cole.fr", "ada@e\u{301}cole.fr"] {
            let signed_in = sign_in_anew(&mut stack, "na", typed, PASSWORD);
            assert_eq!(signed_in.status(), 200, "{typed:?}: {}", signed_in.text());
            assert_eq!(signed_in.json()["user"], first.json()["user"], "{typed:?}");
        }
    });
}

/// An account an earlier release stored under its U-label still signs in with the address typed
/// as it was then, and from then on is stored under the folded form, which a look-alike sign-up
/// then finds taken.
#[test]
fn an_account_stored_under_its_u_label_still_signs_in_and_is_stored_folded_from_then_on() {
    each_shape(|mut stack| {
        signed_up_user(&mut stack, "legacy@example.com");
        stack.query(stack.accounts_db(), "UPDATE users SET email = 'ada@\u{e9}cole.fr'");
        stack.replicate();
        let signed_in = sign_in_anew(&mut stack, "na", "Ada@\u{e9}cole.fr", PASSWORD);
        assert_eq!(signed_in.status(), 200, "{}", signed_in.text());
        assert_eq!(signed_in.json()["user"]["email"], "ada@xn--cole-9oa.fr");
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT email FROM users"), ["ada@xn--cole-9oa.fr"]);
        let newcomer = stack.client("na");
        let look_alike = sign_up(&mut stack, &newcomer, "ada@xn--cole-9oa.fr", PASSWORD);
        assert_eq!((look_alike.status(), look_alike.error_code().as_str()), (409, "email_taken"));
        assert_eq!(sign_in_anew(&mut stack, "na", "Ada@\u{e9}cole.fr", PASSWORD).status(), 200, "typed as before");
    });
}

/// When an earlier release let two accounts take one mailbox (the typed and the folded form),
/// each still signs in — the one typed exactly first — and neither takes the other's address.
#[test]
fn two_accounts_an_earlier_release_gave_one_mailbox_each_still_sign_in() {
    each_shape(|mut stack| {
        signed_up_user(&mut stack, "ada@xn--cole-9oa.fr");
        let folded_id = stack.query_text(stack.accounts_db(), "SELECT id FROM users");
        signed_up_user(&mut stack, "legacy@example.com");
        stack.query(
            stack.accounts_db(),
            "UPDATE users SET email = 'ada@\u{e9}cole.fr' WHERE email = 'legacy@example.com'",
        );
        stack.replicate();

        let legacy = sign_in_anew(&mut stack, "na", "ada@\u{e9}cole.fr", PASSWORD);
        assert_eq!(legacy.status(), 200, "{}", legacy.text());
        assert_eq!(legacy.json()["user"]["email"], "ada@\u{e9}cole.fr", "kept: the folded form is another account's");
        let folded = sign_in_anew(&mut stack, "na", "ada@xn--cole-9oa.fr", PASSWORD);
        assert_eq!(folded.json()["user"]["id"], folded_id[0].as_str());
        let stored = stack.query_text(stack.accounts_db(), "SELECT email FROM users ORDER BY email");
        assert_eq!(stored, ["ada@xn--cole-9oa.fr", "ada@\u{e9}cole.fr"]);
    });
}

#[test]
fn failed_sign_ins_count_against_one_account_however_its_address_is_typed() {
    each_shape(|mut stack| {
        signed_up_user(&mut stack, COMPOSED);
        for typed in [COMPOSED, DECOMPOSED, COMPOSED, DECOMPOSED] {
            let failed = sign_in_anew(&mut stack, "na", typed, "wrong password");
            assert_eq!(failed.status(), 401, "{typed:?}");
        }
        let keys = stack.query_text(stack.accounts_db(), "SELECT attempts FROM sign_in_throttle");
        assert_eq!(keys, ["4"], "one throttle row for the account, counting both forms");
    });
}

#[test]
fn an_account_stored_before_addresses_were_put_in_nfc_still_signs_in() {
    each_shape(|mut stack| {
        signed_up_user(&mut stack, "legacy@example.com");
        let id = stack.query_text(stack.accounts_db(), "SELECT id FROM users");
        // What a release before NFC stored for an address typed decomposed: trimmed and
        // lower-cased, as typed.
        let stored = DECOMPOSED.to_lowercase();
        stack.query(stack.accounts_db(), &format!("UPDATE users SET email = '{stored}'"));
        stack.replicate();

        let client = stack.client("na");
        let signed_in = sign_in(&mut stack, &client, DECOMPOSED, PASSWORD);
        assert_eq!(signed_in.status(), 200, "{}", signed_in.text());
        assert_eq!(signed_in.json()["user"]["id"], id[0].as_str());
        assert_eq!(signed_in.json()["user"]["email"], COMPOSED, "stored folded from then on");
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT email FROM users"), [COMPOSED]);
        // The browser is now a trusted device of that account: its failure counts against the
        // device, not the account's throttle (`accounts::throttle`).
        assert_eq!(sign_in(&mut stack, &client, DECOMPOSED, "wrong password").status(), 401);
        assert_eq!(
            stack.query_text(stack.accounts_db(), "SELECT failures FROM trusted_devices ORDER BY failures"),
            ["0", "1"]
        );
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT count(*) FROM sign_in_throttle"), ["0"]);
    });
}

/// A password with "ö" and "ü" typed as o/u + U+0308 and with no-break spaces (a keyboard's
/// Option-space), as one device sends it; [`PASSWORD_COMPOSED`] is the same password as another
/// device sends it. RFC 8265's OpaqueString makes them one: non-ASCII spaces become U+0020, then NFC.
const PASSWORD_DECOMPOSED: &str = "Passwo\u{308}rt\u{a0}und\u{a0}Schlu\u{308}ssel";
const PASSWORD_COMPOSED: &str = "Passw\u{f6}rt und Schl\u{fc}ssel";

#[test]
fn a_password_typed_composed_or_decomposed_or_with_other_spaces_is_one_password() {
    each_shape(|mut stack| {
        let client = stack.client("na");
        let created = sign_up(&mut stack, &client, "keys@example.com", PASSWORD_DECOMPOSED);
        assert_eq!(created.status(), 201, "{}", created.text());
        for typed in [PASSWORD_COMPOSED, PASSWORD_DECOMPOSED, "Passwo\u{308}rt und Schl\u{fc}ssel"] {
            let signed_in = sign_in_anew(&mut stack, "na", "keys@example.com", typed);
            assert_eq!(signed_in.status(), 200, "{typed:?}: {}", signed_in.text());
        }
        for other in ["Passwort und Schlussel", "Passw\u{f6}rt  und Schl\u{fc}ssel", "passw\u{f6}rt und schl\u{fc}ssel"]
        {
            assert_eq!(sign_in_anew(&mut stack, "na", "keys@example.com", other).status(), 401, "{other:?}");
        }

        // The same rule for the current password that confirms a change, and for the new one.
        let new_password = "ne\u{301}e\u{3000}du\u{a0}jour";
        let change = json!({"current_password": PASSWORD_COMPOSED, "new_password": new_password});
        let changed = stack.send(client.put("/api/me/password").json(change).send());
        assert_eq!(changed.status(), 204, "{}", changed.text());
        let signed_in = sign_in_anew(&mut stack, "na", "keys@example.com", "n\u{e9}e du jour");
        assert_eq!(signed_in.status(), 200, "{}", signed_in.text());
        // And for the password that confirms a deletion.
        let deleted = stack.send(client.delete("/api/me").json(json!({"password": "n\u{e9}e du jour"})).send());
        assert_eq!(deleted.status(), 204, "{}", deleted.text());
    });
}

/// The policy's length is that of the password as compared: `e` + U+0301 is one character.
#[test]
fn a_password_short_once_composed_is_weak() {
    each_shape(|mut stack| {
        let client = stack.client("na");
        let short = sign_up(&mut stack, &client, "short@example.com", "abcdefe\u{301}");
        assert_eq!((short.status(), short.error_code().as_str()), (400, "weak_password"), "{}", short.text());
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT count(*) FROM users"), ["0"]);
    });
}

/// An Argon2id hash, with today's parameters, of `password`'s bytes exactly as given.
fn argon2id_of(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(&[9; 16]).unwrap();
    argon2.hash_password(password.as_bytes(), &salt).unwrap().to_string()
}

/// An earlier release hashed the password as typed. Its owner still signs in typing it that
/// way; the hash is then made again from the compared form, so any spelling works from then on.
#[test]
fn a_password_hashed_as_typed_by_an_earlier_release_still_signs_in_and_is_hashed_again() {
    each_shape(|mut stack| {
        let client = signed_up_user(&mut stack, "legacy@example.com");
        let legacy_hash = argon2id_of(PASSWORD_DECOMPOSED);
        stack.query(stack.accounts_db(), &format!("UPDATE users SET password_hash = '{legacy_hash}'"));
        stack.replicate();

        // The current password that confirms a change is read the same way.
        let change = json!({"current_password": PASSWORD_DECOMPOSED, "new_password": PASSWORD_DECOMPOSED});
        let changed = stack.send(client.put("/api/me/password").json(change).send());
        assert_eq!(changed.status(), 204, "{}", changed.text());
        stack.query(stack.accounts_db(), &format!("UPDATE users SET password_hash = '{legacy_hash}'"));
        stack.replicate();

        let signed_in = sign_in_anew(&mut stack, "na", "legacy@example.com", PASSWORD_DECOMPOSED);
        assert_eq!(signed_in.status(), 200, "{}", signed_in.text());
        stack.replicate();
        let stored = stack.query_text(stack.accounts_db(), "SELECT password_hash FROM users");
        assert_ne!(stored, [legacy_hash.as_str()], "hashed again");
        let composed = sign_in_anew(&mut stack, "na", "legacy@example.com", PASSWORD_COMPOSED);
        assert_eq!(composed.status(), 200, "{}", composed.text());
    });
}

#[test]
fn sign_in_failures_do_not_say_which_field_was_wrong() {
    each_shape(|mut stack| {
        signed_up_user(&mut stack, "known@example.com");
        let wrong_password = sign_in_anew(&mut stack, "na", "known@example.com", "wrong password");
        let unknown_email = sign_in_anew(&mut stack, "na", "nobody@example.com", PASSWORD);
        let malformed_email = sign_in_anew(&mut stack, "na", "nobody", PASSWORD);
        // The attempt is counted in a write (`accounts::throttle`), so each answer may carry the
        // read-your-writes cookie — all three alike, and none a session or device cookie.
        let cookie_names = |response: &Response| -> Vec<String> {
            let names =
                response.headers_named("set-cookie").into_iter().map(|c| c.split('=').next().unwrap().to_string());
            names.collect()
        };
        for response in [&wrong_password, &unknown_email, &malformed_email] {
            assert_eq!(response.status(), 401);
            assert_eq!(response.text(), wrong_password.text());
            assert_eq!(cookie_names(response), cookie_names(&wrong_password));
            assert!(set_cookie_named(response, SESSION_COOKIE).is_none());
            assert!(set_cookie_named(response, "__Host-edgestack_device").is_none());
        }
        assert_eq!(wrong_password.error_code(), "invalid_credentials");
        // Credentials are read from the primary only, whatever the region.
        let from_eu = sign_in_anew(&mut stack, "eu", "known@example.com", PASSWORD);
        assert_eq!(from_eu.status(), 200);
        assert_eq!(from_eu.db_targets().first().map(String::as_str), Some("primary"), "{:?}", from_eu.db_targets());
    });
}

#[test]
fn sign_in_refuses_malformed_bodies_with_json_400() {
    each_shape(|mut stack| {
        let client = stack.client("na");
        for body in [json!({"email": "a@example.com"}), json!({"email": "a@example.com", "password": 1}), json!([])] {
            let response = stack.send(client.post("/api/sessions").json(body.clone()).send());
            assert_eq!((response.status(), response.error_code().as_str()), (400, "invalid_body"), "{body}");
        }
        let plain = stack.send(client.post("/api/sessions").header("content-type", "text/plain").body(b"{}").send());
        assert_eq!(plain.status(), 415);
    });
}

#[test]
fn every_sign_in_issues_a_new_token_and_ignores_planted_ones() {
    each_shape(|mut stack| {
        let first = signed_up_user(&mut stack, "fixation@example.com");
        let signup_token = first.cookie(SESSION_COOKIE).unwrap();

        // Session fixation: a token the client made up is never adopted.
        let victim = stack.client("na");
        let planted = "A".repeat(43);
        victim.set_cookie(SESSION_COOKIE, &planted);
        assert_eq!(me_status(&mut stack, &victim), 401);
        assert_eq!(sign_in(&mut stack, &victim, "fixation@example.com", PASSWORD).status(), 200);
        let issued = victim.cookie(SESSION_COOKIE).unwrap();
        assert_ne!(issued, planted);
        assert_ne!(issued, signup_token);

        // Signing in again from a signed-in client replaces its session.
        assert_eq!(sign_in(&mut stack, &first, "fixation@example.com", PASSWORD).status(), 200);
        let replacement = first.cookie(SESSION_COOKIE).unwrap();
        assert_ne!(replacement, signup_token);
        first.set_cookie(SESSION_COOKIE, &signup_token);
        assert_eq!(me_status(&mut stack, &first), 401, "the replaced session must be gone");
        first.set_cookie(SESSION_COOKIE, &replacement);
        assert_eq!(me_status(&mut stack, &first), 200);
        let sessions = stack.query_text(stack.accounts_db(), "SELECT CAST(count(*) AS TEXT) FROM sessions");
        assert_eq!(sessions, ["2"], "the victim's and the replacement");
    });
}

/// Signing up from a signed-in client ends the session it had, as signing in does: the new
/// cookie overwrites the old one, which must not stay valid (a copy of it would read and write
/// as the first account until its idle timeout).
#[test]
fn signing_up_from_a_signed_in_client_ends_its_session() {
    each_shape(|mut stack| {
        let client = signed_up_user(&mut stack, "first@example.com");
        let first = client.cookie(SESSION_COOKIE).unwrap();
        let body = json!({"email": "second@example.com", "password": PASSWORD});
        assert_eq!(stack.send(client.post("/api/accounts").json(body).send()).status(), 201);
        let second = client.cookie(SESSION_COOKIE).unwrap();
        assert_ne!(second, first);
        client.set_cookie(SESSION_COOKIE, &first);
        assert_eq!(me_status(&mut stack, &client), 401, "the first account's session outlived the sign-up");
        client.set_cookie(SESSION_COOKIE, &second);
        assert_eq!(me_status(&mut stack, &client), 200);
    });
}

#[test]
fn sign_out_revokes_the_session_at_once() {
    each_shape(|mut stack| {
        let client = signed_up_user(&mut stack, "leaving@example.com");
        let token = client.cookie(SESSION_COOKIE).unwrap();

        let response = stack.send(client.delete("/api/sessions/current").send());

        assert_eq!(response.status(), 204, "{}", response.text());
        assert!(set_cookie_named(&response, SESSION_COOKIE).unwrap().contains("Max-Age=0"));
        if stack.options.shape == Shape::Services {
            let identity = set_cookie_named(&response, IDENTITY_COOKIE);
            assert!(identity.is_some_and(|c| c.contains("Max-Age=0")), "the identity goes too: {identity:?}");
        }
        assert_eq!(client.cookie(SESSION_COOKIE), None);
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT token_hash FROM sessions"), Vec::<String>::new());
        client.set_cookie(SESSION_COOKIE, &token);
        let me = stack.send(client.get("/api/me").send());
        assert_eq!((me.status(), me.error_code().as_str()), (401, "unauthenticated"));
        let again = stack.send(client.delete("/api/sessions/current").send());
        assert_eq!((again.status(), again.error_code().as_str()), (401, "unauthenticated"));
        assert!(set_cookie_named(&again, SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "cleared anyway");
        // A review's report: a cookie that is no session token at all was left in place.
        client.set_cookie(SESSION_COOKIE, "garbage");
        let malformed = stack.send(client.delete("/api/sessions/current").send());
        assert_eq!((malformed.status(), malformed.error_code().as_str()), (401, "unauthenticated"));
        assert!(set_cookie_named(&malformed, SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "cleared too");
        assert_eq!(client.cookie(SESSION_COOKIE), None);
    });
}

#[test]
fn me_answers_the_signed_in_user_and_401_otherwise() {
    each_shape(|mut stack| {
        let client = signed_up_user(&mut stack, "me@example.com");

        let me = stack.send(client.get("/api/me").send());

        assert_eq!(me.status(), 200);
        let user = me.json()["user"].clone();
        let fields: std::collections::BTreeSet<&str> = user.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["created_at", "email", "id"].into(), "{user}");
        assert_eq!(user["email"], "me@example.com");
        for cookie in ["", "__Host-edgestack_session=", "__Host-edgestack_session=short", "__Host-edgestack_session=!!"]
        {
            let anonymous = stack.client("na");
            let response = stack.send(anonymous.get("/api/me").header("cookie", cookie).send());
            assert_eq!((response.status(), response.error_code().as_str()), (401, "unauthenticated"), "{cookie:?}");
        }
    });
}

/// Idle 3 s, absolute 8 s, on the virtual clock: activity every second keeps one session past
/// the idle limit; nothing keeps it past the absolute one.
#[test]
fn sessions_expire_when_idle_and_at_their_absolute_limit() {
    for shape in [Shape::Monolith, Shape::Services] {
        println!("--- shape: {shape:?}");
        let vars = vec![("SESSION_IDLE_SECONDS", "3".to_string()), ("SESSION_ABSOLUTE_SECONDS", "8".to_string())];
        let mut stack = Stack::new(crate::support::Options { shape, vars, ..Default::default() });
        let idle = signed_up_user(&mut stack, "idle@example.com");
        let active = signed_up_user(&mut stack, "active@example.com");
        let signed_in_at = stack.now_ms();

        while stack.now_ms() - signed_in_at < 4_000.0 {
            let note = stack.send(active.post("/api/notes").json(json!({"title": "tick"})).send());
            assert_eq!(note.status(), 201, "active session at {} ms: {}", stack.now_ms() - signed_in_at, note.text());
            stack.advance(1_000.0);
        }
        assert_eq!(me_status(&mut stack, &idle), 401, "idle for over 3 s");
        assert_eq!(me_status(&mut stack, &active), 200);

        while stack.now_ms() - signed_in_at < 8_500.0 {
            stack.send(active.post("/api/notes").json(json!({"title": "tick"})).send());
            stack.advance(1_000.0);
        }
        assert_eq!(me_status(&mut stack, &active), 401, "older than 8 s");
        let late = stack.send(active.post("/api/notes").json(json!({"title": "too late"})).send());
        assert_eq!((late.status(), late.error_code().as_str()), (401, "unauthenticated"));
    }
}

#[test]
fn password_change_ends_every_other_session() {
    each_shape(|mut stack| {
        let laptop = signed_up_user(&mut stack, "owner@example.com");
        let phone = stack.client("na");
        assert_eq!(sign_in(&mut stack, &phone, "owner@example.com", PASSWORD).status(), 200);
        let new_password = "a brand new passphrase";
        let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});

        let wrong = stack.send(laptop.put("/api/me/password").json(change("nope nope", new_password)).send());
        assert_eq!((wrong.status(), wrong.error_code().as_str()), (401, "invalid_credentials"));
        let weak = stack.send(laptop.put("/api/me/password").json(change(PASSWORD, "short")).send());
        assert_eq!((weak.status(), weak.error_code().as_str()), (400, "weak_password"));
        let incomplete = stack.send(laptop.put("/api/me/password").json(json!({"new_password": new_password})).send());
        assert_eq!((incomplete.status(), incomplete.error_code().as_str()), (400, "invalid_body"));
        assert_eq!(me_status(&mut stack, &phone), 200, "refused changes end nothing");
        let old_laptop_token = laptop.cookie(SESSION_COOKIE).unwrap();

        let changed = stack.send(laptop.put("/api/me/password").json(change(PASSWORD, new_password)).send());

        assert_eq!(changed.status(), 204, "{}", changed.text());
        assert_ne!(laptop.cookie(SESSION_COOKIE).unwrap(), old_laptop_token, "the changer gets a fresh session");
        assert_eq!(me_status(&mut stack, &laptop), 200);
        assert_eq!(me_status(&mut stack, &phone), 401, "other sessions end");
        assert_eq!(sign_in_anew(&mut stack, "na", "owner@example.com", PASSWORD).status(), 401);
        assert_eq!(sign_in_anew(&mut stack, "na", "owner@example.com", new_password).status(), 200);
    });
}

#[test]
fn a_password_changed_on_the_primary_is_never_accepted_from_a_lagging_replica() {
    let mut stack = Stack::monolith();
    let owner = signed_up_user(&mut stack, "lag@example.com");
    // The eu replica holds the account with its old hash, then stops applying changes.
    stack.replicate();
    stack.set_lag("main", "eu", 10_000.0);
    let change = json!({"current_password": PASSWORD, "new_password": "the new passphrase"});
    assert_eq!(stack.send(owner.put("/api/me/password").json(change).send()).status(), 204);

    let old = sign_in_anew(&mut stack, "eu", "lag@example.com", PASSWORD);

    assert_eq!(old.status(), 401, "the eu replica still holds the old hash; sign-in reads the primary");
    assert_eq!(old.db_targets(), ["primary"]);
}

#[test]
fn deleting_an_account_needs_its_password_and_removes_its_sessions_and_notes() {
    each_shape(|mut stack| {
        let client = signed_up_user(&mut stack, "gone@example.com");
        let other_device = stack.client("na");
        assert_eq!(sign_in(&mut stack, &other_device, "gone@example.com", PASSWORD).status(), 200);
        let private = client.create_note(&mut stack, "private", "mine only");
        let public = client.publish_note(&mut stack, "public", "for everyone");
        let reader = stack.client("na");
        assert_eq!(stack.send(reader.get(&format!("/api/public/notes/{public}")).send()).status(), 200);
        let user_id = client.user_id(&mut stack);
        let notes_of_user = format!("SELECT id FROM notes WHERE owner_id = '{user_id}'");

        let wrong = stack.send(client.delete("/api/me").json(json!({"password": "not my password at all"})).send());
        assert_eq!((wrong.status(), wrong.error_code().as_str()), (401, "invalid_credentials"));
        let unconfirmed = stack.send(client.delete("/api/me").header("content-type", "application/json").send());
        assert_eq!(unconfirmed.status(), 400, "{}", unconfirmed.text());
        let stranger = stack.send(stack.client("na").delete("/api/me").json(json!({"password": PASSWORD})).send());
        assert_eq!((stranger.status(), stranger.error_code().as_str()), (401, "unauthenticated"));
        assert_eq!(stack.query_text(stack.notes_db(), &notes_of_user).len(), 2);

        let deleted = stack.send(client.delete("/api/me").json(json!({"password": PASSWORD})).send());

        assert_eq!(deleted.status(), 204, "{}", deleted.text());
        assert!(deleted.headers_named("set-cookie").iter().any(|c| c.starts_with("__Host-edgestack_session=;")));
        assert_eq!(client.cookie(SESSION_COOKIE), None, "the session cookie is cleared");
        assert_eq!(client.cookie(IDENTITY_COOKIE), None, "and the identity, if any");
        assert_eq!(me_status(&mut stack, &other_device), 401, "every session ends");
        assert_eq!(sign_in(&mut stack, &client, "gone@example.com", PASSWORD).status(), 401, "the account is gone");
        let users = format!("SELECT id FROM users WHERE id = '{user_id}'");
        assert_eq!(stack.query_text(stack.accounts_db(), &users), Vec::<String>::new());
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT token_hash FROM sessions"), Vec::<String>::new());
        assert_eq!(stack.query_text(stack.notes_db(), &notes_of_user), Vec::<String>::new());
        let public_copy = stack.send(reader.get(&format!("/api/public/notes/{public}")).send());
        assert_eq!(public_copy.status(), 404, "the public copy is gone too ({})", public_copy.cache_status());
        let private_read = stack.send(other_device.get(&format!("/api/notes/{private}")).send());
        assert_eq!(private_read.status(), 401);
        assert_eq!(sign_up(&mut stack, &client, "gone@example.com", PASSWORD).status(), 201, "the email is free again");
    });
}

fn check_deletion_body(stack: &mut Stack, client: &Client, content_type: &str, body: &[u8], expected: u16) {
    let response = stack.send(client.delete("/api/me").header("content-type", content_type).body(body).send());
    let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
    assert_eq!(response.status(), expected, "{content_type} {shown}: {}", response.text());
    assert!(!response.error_code().is_empty());
}

#[test]
fn account_deletion_refuses_bad_input_with_json_errors_and_keeps_the_account() {
    each_shape(|mut stack| {
        let client = signed_up_user(&mut stack, "kept@example.com");
        let note = client.create_note(&mut stack, "kept", "through every bad request");
        let oversized = format!(r#"{{"password": "{}"}}"#, "x".repeat(edgestack_core::json_body::MAX_BODY_BYTES));
        check_deletion_body(&mut stack, &client, "application/json", b"{not json", 400);
        check_deletion_body(&mut stack, &client, "application/json", b"null", 400);
        check_deletion_body(&mut stack, &client, "application/json", br#"{"password": 12345}"#, 400);
        check_deletion_body(
            &mut stack,
            &client,
            "application/json",
            br#"{"password": "correct horse battery", "admin": true}"#,
            400,
        );
        check_deletion_body(&mut stack, &client, "application/json", br#"{"password": "' OR 1=1 --"}"#, 401);
        check_deletion_body(&mut stack, &client, "text/plain", br#"{"password": "correct horse battery"}"#, 415);
        check_deletion_body(&mut stack, &client, "application/json", oversized.as_bytes(), 413);

        // A garbage identity cookie (or one a client makes up) is never taken for an identity.
        let session = client.cookie(SESSION_COOKIE).unwrap();
        let garbage = format!("{SESSION_COOKIE}={session}; {IDENTITY_COOKIE}=eyJ2IjoxfQ.AAAA");
        let listed = stack.send(stack.client("na").get("/api/notes").header("cookie", &garbage).send());
        assert_eq!(listed.status(), 200, "{}", listed.text());
        assert_eq!(listed.json()["notes"][0]["id"], note.as_str());

        assert_eq!(me_status(&mut stack, &client), 200, "the account is still there");
        let kept = stack.query_text(stack.notes_db(), &format!("SELECT id FROM notes WHERE id = '{note}'"));
        assert_eq!(kept, [note]);
        assert_eq!(sign_in_anew(&mut stack, "na", "kept@example.com", PASSWORD).status(), 200);
    });
}
