//! CSRF, security headers, and a thousand malformed or hostile requests.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[test]
fn state_changes_need_same_origin_proof() {
    let app = spawn_app();
    let (owner, _) = app.signed_up_client();
    let cookie = format!("__Host-edgestack_session={}", owner.cookie().unwrap());
    let body = br#"{"title": "forged"}"#;
    let own_origin = app.dev.base_url.clone();
    let post = |headers: &[(&str, &str)]| {
        let mut all = vec![("cookie", cookie.as_str()), ("content-type", "application/json")];
        all.extend_from_slice(headers);
        app.request("POST", "/api/notes", &all, Some(body))
    };

    for (headers, why) in [
        (vec![], "no proof at all (a plain cross-site form)"),
        (vec![("origin", "https://evil.example")], "foreign Origin"),
        (vec![("origin", "https://evil.example"), ("x-edgestack-client", "1")], "foreign Origin with the header"),
        (vec![("sec-fetch-site", "cross-site")], "cross-site fetch"),
        (vec![("sec-fetch-site", "same-site")], "sibling subdomain"),
    ] {
        let response = post(&headers);
        assert_eq!((response.status, response.error_code().as_str()), (403, "csrf"), "{why}");
    }
    assert_eq!(post(&[("origin", own_origin.as_str())]).status, 201);
    assert_eq!(post(&[("sec-fetch-site", "same-origin")]).status, 201);
    assert_eq!(post(&[("x-edgestack-client", "1")]).status, 201);
    let notes = owner.send("GET", "/api/notes", None).json();
    assert_eq!(notes["notes"].as_array().unwrap().len(), 3, "only the three proven requests wrote");
}

#[test]
fn api_responses_carry_security_headers() {
    let app = spawn_app();
    for response in [app.get("/api/health"), app.get("/api/nope"), app.client().send("GET", "/api/me", None)] {
        assert!(response.header("strict-transport-security").is_some_and(|v| v.starts_with("max-age=")));
        assert!(response.header("content-security-policy").is_some_and(|v| v.contains("default-src 'self'")));
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert!(response.header("referrer-policy").is_some());
    }
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

/// Every byte but unreserved URI characters as `%XX`, so the path reaches the worker intact.
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
    let app = spawn_app();
    let (alice, alice_email) = app.signed_up_client();
    let alice_note = alice.create_note("alice", "untouched");
    let (mallory, _) = app.signed_up_client();
    let schema_before = app.schema();
    let password_hashes = "SELECT email || ' ' || password_hash FROM users ORDER BY email";
    let hashes_before = app.query_text(password_hashes);
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
        let body = if method == "GET" || method == "DELETE" { None } else { Some(hostile_body(&mut rng)) };
        let cookie = format!("__Host-edgestack_session={}", mallory.cookie().unwrap());
        let response = app.request(
            method,
            &path,
            &[("content-type", "application/json"), ("x-edgestack-client", "1"), ("cookie", &cookie)],
            body.as_deref(),
        );
        if response.status >= 500 {
            server_errors.push(format!("case {case}: {method} {path} → {} {}", response.status, response.text()));
        }
        // Mallory may only ever create her own notes; everything else must be refused.
        let created_own_note = method == "POST" && path == "/api/notes" && response.status == 201;
        let created_account = method == "POST" && path == "/api/accounts" && response.status == 201;
        assert!(
            response.status >= 400 || created_own_note || created_account,
            "case {case}: {method} {path} → {}",
            response.status
        );
    }

    assert!(server_errors.is_empty(), "{} server errors:\n{}", server_errors.len(), server_errors.join("\n"));
    assert_eq!(app.schema(), schema_before, "schema changed");
    let note = alice.send("GET", &format!("/api/notes/{alice_note}"), None).json();
    assert_eq!((note["note"]["title"].as_str(), note["note"]["body"].as_str()), (Some("alice"), Some("untouched")));
    let hashes_after = app.query_text(password_hashes);
    for line in &hashes_before {
        assert!(hashes_after.contains(line), "a password hash changed: {line}");
    }
    assert!(hashes_before.iter().any(|line| line.starts_with(&alice_email)));
}
