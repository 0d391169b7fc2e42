//! CSRF (state changes need same-origin proof) and a thousand malformed or hostile requests, in
//! both shapes: every one is refused with a 4xx and none changes a row, a hash or the schema.

use serde_json::{Value, json};

use crate::support::{Client, Stack, each_shape, signed_up_user};

/// The origin the simulated Workers are reached at (`Worker::api_request`).
const OWN_ORIGIN: &str = "https://edgestack.test";

#[test]
fn state_changes_need_same_origin_proof() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "csrf@example.com");
        let post = |stack: &mut Stack, headers: &[(&str, &str)]| {
            let mut call = owner.bare("POST", "/api/notes").json(json!({"title": "forged"}));
            for (name, value) in headers {
                call = call.header(name, value);
            }
            stack.send(call.send())
        };

        for (headers, why) in [
            (vec![], "no proof at all (a plain cross-site form)"),
            (vec![("origin", "https://evil.example")], "foreign Origin"),
            (vec![("origin", "https://evil.example"), ("x-edgestack-client", "1")], "foreign Origin with the header"),
            (vec![("sec-fetch-site", "cross-site")], "cross-site fetch"),
            (vec![("sec-fetch-site", "same-site")], "sibling subdomain"),
            (vec![("origin", "http://edgestack.test")], "same host, other scheme"),
            (vec![("origin", "null")], "opaque origin"),
        ] {
            let response = post(&mut stack, &headers);
            assert_eq!((response.status(), response.error_code().as_str()), (403, "csrf"), "{why}");
            assert!(response.timing("hop").is_empty(), "{why}: refused before any service is called");
        }
        assert_eq!(post(&mut stack, &[("origin", OWN_ORIGIN)]).status(), 201);
        assert_eq!(post(&mut stack, &[("sec-fetch-site", "same-origin")]).status(), 201);
        assert_eq!(post(&mut stack, &[("x-edgestack-client", "1")]).status(), 201);
        let notes = stack.send(owner.get("/api/notes").send()).json();
        assert_eq!(notes["notes"].as_array().unwrap().len(), 3, "only the three proven requests wrote");
        // Reads need no proof.
        assert_eq!(stack.send(owner.bare("GET", "/api/notes").send()).status(), 200);
        // Every method that changes state is checked, not only POST.
        let id = notes["notes"][0]["id"].as_str().unwrap().to_string();
        for (method, path) in [
            ("PATCH", format!("/api/notes/{id}")),
            ("DELETE", format!("/api/notes/{id}")),
            ("PUT", format!("/api/notes/{id}/publication")),
            ("DELETE", "/api/sessions/current".to_string()),
        ] {
            let call = owner.bare(method, &path).header("origin", "https://evil.example").json(json!({"title": "x"}));
            let response = stack.send(call.send());
            assert_eq!((response.status(), response.error_code().as_str()), (403, "csrf"), "{method} {path}");
        }
        assert_eq!(stack.send(owner.get("/api/me").send()).status(), 200, "still signed in");
    });
}

/// A small deterministic generator, so a failure names a reproducible case.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const INJECTIONS: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE notes; --",
    "\" OR 1=1 --",
    "1; DELETE FROM users",
    "') UNION SELECT password_hash, email, 1, 1, 1, 1 FROM users --",
    "%27%20OR%201%3D1",
    "\u{0}",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "🦀🦀🦀",
    "9999999999999999999999999",
];

/// Every byte but unreserved URI characters as `%XX`, as the path reaches the worker.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hostile_body(rng: &mut Xorshift) -> Vec<u8> {
    let injection = rng.pick(INJECTIONS).to_string();
    match rng.next() % 10 {
        0 => (0..rng.next() % 300).map(|_| (rng.next() % 256) as u8).collect(),
        1 => br#"{"email": "a@example.com", "password": "#.to_vec(),
        2 => json!({"email": injection, "password": injection}).to_string().into_bytes(),
        3 => json!({"title": injection, "body": injection, "owner_id": "x"}).to_string().into_bytes(),
        4 => json!({"title": 1e300, "body": [1, 2, {"x": null}]}).to_string().into_bytes(),
        5 => b"{\"title\": 1e400, \"body\": 99999999999999999999999999}".to_vec(),
        6 => format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        7 => json!({"email": format!("{injection}@example.com"), "password": "pw"}).to_string().into_bytes(),
        8 => vec![0xff, 0xfe, b'{', b'"', 0xc3, 0x28, b'}'],
        _ => json!({"current_password": injection, "new_password": Value::Null}).to_string().into_bytes(),
    }
}

#[test]
fn a_thousand_hostile_requests_get_4xx_and_change_nothing() {
    each_shape(|mut stack| {
        let alice = signed_up_user(&mut stack, "alice@example.com");
        let alice_note = alice.create_note(&mut stack, "alice", "untouched");
        let mallory = signed_up_user(&mut stack, "mallory@example.com");
        let (accounts_db, notes_db) = (stack.accounts_db(), stack.notes_db());
        let schema_before = (stack.schema(accounts_db), stack.schema(notes_db));
        let password_hashes = "SELECT email || ' ' || password_hash FROM users ORDER BY email";
        let hashes_before = stack.query_text(accounts_db, password_hashes);
        let mut rng = Xorshift(0x5eed_1234_abcd_ef01);
        let mut server_errors = Vec::new();

        for case in 0..1_000 {
            let injection = percent_encode(rng.pick::<&str>(INJECTIONS));
            let (method, path) = match rng.next() % 8 {
                0 => ("POST", "/api/accounts".to_string()),
                1 => ("POST", "/api/sessions".to_string()),
                2 => ("POST", "/api/notes".to_string()),
                3 => ("PATCH", format!("/api/notes/{alice_note}")),
                4 => ("PUT", "/api/me/password".to_string()),
                5 => ("GET", format!("/api/notes/{injection}")),
                6 => ("GET", format!("/api/public/notes?limit={injection}&cursor={injection}")),
                _ => ("DELETE", format!("/api/notes/{injection}")),
            };
            let mut call = mallory
                .bare(method, &path)
                .header("content-type", "application/json")
                .header("x-edgestack-client", "1");
            if method != "GET" && method != "DELETE" {
                call = call.body(&hostile_body(&mut rng));
            }
            let response = stack.send(call.send());
            if response.status() >= 500 {
                server_errors.push(format!("case {case}: {method} {path} → {} {}", response.status(), response.text()));
            }
            // Mallory may only ever create her own notes (or accounts); everything else is refused.
            let created_own_note = method == "POST" && path == "/api/notes" && response.status() == 201;
            let created_account = method == "POST" && path == "/api/accounts" && response.status() == 201;
            assert!(
                response.status() >= 400 || created_own_note || created_account,
                "case {case}: {method} {path} → {}",
                response.status()
            );
            if response.status() >= 400 {
                assert!(!response.error_code().is_empty(), "case {case}: every refusal is a JSON error");
            }
        }

        assert!(server_errors.is_empty(), "{} server errors:\n{}", server_errors.len(), server_errors.join("\n"));
        assert_eq!((stack.schema(accounts_db), stack.schema(notes_db)), schema_before, "schema changed");
        let note = stack.send(alice.get(&format!("/api/notes/{alice_note}")).send()).json();
        assert_eq!((note["note"]["title"].as_str(), note["note"]["body"].as_str()), (Some("alice"), Some("untouched")));
        let hashes_after = stack.query_text(accounts_db, password_hashes);
        for line in &hashes_before {
            assert!(hashes_after.contains(line), "a password hash changed: {line}");
        }
        assert!(hashes_before.iter().any(|line| line.starts_with("alice@example.com")));
    });
}

/// Every JSON route takes an object only (docs/api.md): the same fields as an array in order —
/// which serde's derived structs accept on their own — are `400 invalid_body`, the message names
/// no Rust type, and nothing changes. Found by a review: an array created and published a note,
/// edited one and changed a password.
#[test]
fn a_body_that_is_an_array_of_the_fields_is_refused_on_every_json_route() {
    use crate::support::PASSWORD;
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "arrays@example.com");
        let note = owner.create_note(&mut stack, "kept", "as it was");
        let new_password = "a brand new passphrase 42";
        for (method, path, body) in [
            ("POST", "/api/accounts".to_string(), json!(["second@example.com", PASSWORD])),
            ("POST", "/api/sessions".to_string(), json!(["arrays@example.com", PASSWORD])),
            ("POST", "/api/notes".to_string(), json!(["array-title", "array body", true])),
            ("PATCH", format!("/api/notes/{note}"), json!(["patched", null])),
            ("PUT", "/api/me/password".to_string(), json!([PASSWORD, new_password])),
            ("DELETE", "/api/me".to_string(), json!([PASSWORD])),
            ("POST", "/api/notes".to_string(), json!(null)),
            ("POST", "/api/notes".to_string(), json!("a note")),
        ] {
            let response = stack.send(owner.bare(method, &path).header("x-edgestack-client", "1").json(body).send());
            let error = &response.json()["error"];
            assert_eq!((response.status(), error["code"].as_str()), (400, Some("invalid_body")), "{method} {path}");
            assert_eq!(error["message"], "malformed JSON body: the body must be a JSON object", "{method} {path}");
        }
        let notes = stack.send(owner.get("/api/notes").send()).json();
        let titles: Vec<&str> =
            notes["notes"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["kept"], "no note made or changed");
        let users = stack.query_text(stack.accounts_db(), "SELECT email FROM users ORDER BY email");
        assert_eq!(users, ["arrays@example.com"], "no account made or deleted");
        let sign_in = json!({"email": "arrays@example.com", "password": PASSWORD});
        let signed_in =
            stack.send(owner.bare("POST", "/api/sessions").header("x-edgestack-client", "1").json(sign_in).send());
        assert_eq!(signed_in.status(), 200, "the password is unchanged");
    });
}

/// The edge asks before reading a body whether the request needs one (`app::body_plan`): no
/// route, a method the path does not allow and a state change without same-origin proof are
/// refused from the head alone, and a route that takes no body gets none. A review found a
/// body declared and never sent held `POST /api/nope` for the body deadline (10 s) before a 408.
#[test]
fn a_request_is_refused_or_spared_its_body_before_any_of_it_is_read() {
    use edgestack_core::app::{self, BodyPlan};
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "plan@example.com");
        let note = owner.create_note(&mut stack, "kept", "");
        let front = stack.front();
        let config = front.config();
        let proof = [("x-edgestack-client".to_string(), "1".to_string())];
        let cross_site = [("origin".to_string(), "https://evil.example".to_string())];
        let plan = |method: &str, path: &str, headers: &[(String, String)]| {
            // A body the plan must not need to look at: it is not even JSON.
            let request = front.api_request(method, path, headers, b"not read".to_vec());
            match app::body_plan(&*front, config.as_ref(), &request) {
                BodyPlan::Refuse(response) => format!("refuse {}", response.status),
                BodyPlan::Read(_) => "read".to_string(),
                BodyPlan::Ignore(_) => "ignore".to_string(),
            }
        };
        let note_path = format!("/api/notes/{note}");
        let publication = format!("{note_path}/publication");
        for (method, path, headers, expected) in [
            ("POST", "/api/nope", &proof[..], "refuse 404"),
            ("PUT", "/api/health", &proof[..], "refuse 405"),
            ("PROPFIND", "/api/notes", &proof[..], "refuse 405"),
            ("POST", "/api/notes", &cross_site[..], "refuse 403"),
            ("POST", "/api/notes", &[][..], "refuse 403"),
            ("POST", "/api/notes", &proof[..], "read"),
            ("PATCH", &note_path, &proof[..], "read"),
            ("POST", "/api/accounts", &proof[..], "read"),
            ("POST", "/api/sessions", &proof[..], "read"),
            ("PUT", "/api/me/password", &proof[..], "read"),
            ("DELETE", "/api/me", &proof[..], "read"),
            ("POST", "/api/csp-reports", &[][..], "read"),
            ("DELETE", &note_path, &proof[..], "ignore"),
            ("PUT", &publication, &proof[..], "ignore"),
            ("DELETE", "/api/sessions/current", &proof[..], "ignore"),
            ("GET", "/api/health", &[][..], "ignore"),
        ] {
            assert_eq!(plan(method, path, headers), expected, "{method} {path}");
        }
        // A route that takes no body answers as before whatever is sent with it.
        let unpublished = stack.send(owner.delete(&publication).body(b"{ not json").send());
        assert_eq!(unpublished.status(), 200, "{}", unpublished.text());
    });
}

/// A review's report: a cookie any sibling host can plant, whose value holds a comma and a
/// session cookie (`planted=1,__Host-edgestack_session=<planter's token>`, which a browser sends
/// before the real one when its path is longer), signed the victim into the planter's account:
/// the victim's next note went to the planter. Only `;` separates cookies (`cookies`).
#[test]
fn a_session_cookie_inside_another_cookies_value_is_not_read() {
    const SESSION: &str = "__Host-edgestack_session";
    each_shape(|mut stack| {
        let victim = signed_up_user(&mut stack, "victim@example.com");
        let planter = signed_up_user(&mut stack, "planter@example.com");
        let (victim_token, planter_token) = (victim.cookie(SESSION).unwrap(), planter.cookie(SESSION).unwrap());
        for cookie in [
            format!("planted=1,{SESSION}={planter_token}; {SESSION}={victim_token}"),
            format!("planted=1, {SESSION}={planter_token}; {SESSION}={victim_token}"),
            format!("planted=\"1,{SESSION}={planter_token}\"; {SESSION}={victim_token}"),
        ] {
            acts_as_the_victim(&mut stack, &victim, &cookie);
            // Only the planted session, inside the value: no session at all.
            let planted_only = format!("planted=1,{SESSION}={planter_token}");
            let anonymous = stack.send(victim.bare("GET", "/api/me").header("cookie", &planted_only).send());
            assert_eq!(anonymous.status(), 401, "{}", anonymous.text());
        }
        let planters = stack.send(planter.get("/api/notes").send()).json();
        assert_eq!(planters["notes"], json!([]), "the victim's notes went to the planter");
        let victims = stack.send(victim.get("/api/notes").send()).json();
        assert_eq!(victims["notes"].as_array().map(Vec::len), Some(3));
    });
}

/// `cookie` sent from the victim's browser: `/api/me` answers the victim, and a note written
/// with it is the victim's (a planted session would make both the planter's).
fn acts_as_the_victim(stack: &mut Stack, victim: &Client, cookie: &str) {
    let me = stack.send(victim.bare("GET", "/api/me").header("cookie", cookie).send());
    assert_eq!(me.json()["user"]["email"], "victim@example.com", "Cookie: {cookie:?}: {}", me.text());
    let created = stack.send(
        victim
            .bare("POST", "/api/notes")
            .header("cookie", cookie)
            .header("x-edgestack-client", "1")
            .json(json!({"title": "victim's diary"}))
            .send(),
    );
    assert_eq!(created.status(), 201, "Cookie: {cookie:?}: {}", created.text());
}

/// A cookie a sibling host may plant (`Domain=` the parent) whose name is the session cookie's
/// behind a Unicode space (`\u{2000}__Host-edgestack_session`, from `document.cookie` there): the
/// browser sees no `__Host-` prefix and stores it, the Workers runtime hands the name on
/// decoded from UTF-8, and a name trimmed of Unicode white space read it as the session —
/// the victim signed into the planter's account, their next note the planter's (a cookie
/// prefix bypass; RFC 6265 §5.2 strips only spaces and tabs from a name).
#[test]
fn a_session_cookie_name_behind_unicode_white_space_is_not_read() {
    const SESSION: &str = "__Host-edgestack_session";
    each_shape(|mut stack| {
        let victim = signed_up_user(&mut stack, "victim@example.com");
        let planter = signed_up_user(&mut stack, "planter@example.com");
        let (victim_token, planter_token) = (victim.cookie(SESSION).unwrap(), planter.cookie(SESSION).unwrap());
        for space in ['\u{2000}', '\u{a0}', '\u{85}', '\u{3000}', '\u{feff}', '\u{b}', '\u{c}'] {
            // Sent first: a planted cookie with a longer path goes before the real one.
            let cookie = format!("{space}{SESSION}={planter_token}; {SESSION}={victim_token}");
            acts_as_the_victim(&mut stack, &victim, &cookie);
            let planted_only = format!("{SESSION}{space}={planter_token}");
            let anonymous = stack.send(victim.bare("GET", "/api/me").header("cookie", &planted_only).send());
            assert_eq!(anonymous.status(), 401, "{space:?} after the name: {}", anonymous.text());
        }
        let planters = stack.send(planter.get("/api/notes").send()).json();
        assert_eq!(planters["notes"], json!([]), "the victim's notes went to the planter");
    });
}

/// `POST /api/csp-reports` takes reports from anyone, without same-origin proof, and logs their
/// fields: a line break in a field must not start a line of the sender's choosing in the log
/// (log forging, ASVS 5.0 16.4.1).
#[test]
fn a_csp_report_cannot_forge_log_lines() {
    let mut stack = Stack::monolith();
    let anyone = stack.client("na");
    let forged = "https://x.example/\n[na] rate limiter SignInPerClient unavailable, request refused: forged";
    let body = json!({"csp-report": {"document-uri": "https://edgestack.test/", "violated-directive": "script-src",
        "blocked-uri": forged}});
    let call = anyone.bare("POST", "/api/csp-reports").header("content-type", "application/csp-report");
    let response = stack.send(call.body(body.to_string().as_bytes()).send());
    assert_eq!(response.status(), 204, "{}", response.text());
    let logged = stack.logs_containing("csp violation");
    assert_eq!(logged.len(), 1);
    assert!(
        !logged[0].chars().any(char::is_control),
        "a report's text reaches the log with its control characters: {:?}",
        logged[0]
    );
}
