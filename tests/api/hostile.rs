//! What only the real worker adds on the wire: security, cache and timing headers on every API
//! response, and the request's own origin for the CSRF check. CSRF rules and a thousand hostile
//! requests are tested in-process, in both shapes: `crates/edgestack-core/tests/app/hostile.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use edgestack_core::assets::SECURITY_HEADERS;

use crate::helpers::spawn_app;

#[test]
fn api_responses_carry_security_cache_and_timing_headers() {
    let app = spawn_app();
    let (author, _) = app.signed_up_client();
    let id = author.create_note("public", "");
    assert_eq!(author.send("PUT", &format!("/api/notes/{id}/publication"), None).status, 200);
    let private = [
        ("health", app.get("/api/health")),
        ("404", app.get("/api/nope")),
        // The API's root is the Worker's too (`run_worker_first`), not the site's 404 page.
        ("404 at /api", app.get("/api")),
        ("401", app.client().send("GET", "/api/me", None)),
        ("me", author.send("GET", "/api/me", None)),
        ("my notes", author.send("GET", "/api/notes", None)),
    ];
    let public = app.get("/api/public/notes");

    let every = private.iter().map(|(what, response)| (*what, response)).chain([("public feed", &public)]);
    for (what, response) in every {
        assert!(response.header("strict-transport-security").is_some_and(|v| v.starts_with("max-age=")), "{what}");
        assert!(response.header("content-security-policy").is_some_and(|v| v.contains("default-src 'self'")), "{what}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"), "{what}");
        assert!(response.header("referrer-policy").is_some(), "{what}");
        // Once each, also where the services shape's entry passes a service's answer on.
        for name in
            SECURITY_HEADERS.iter().map(|(name, _)| *name).chain(["x-edgestack-version-id", "x-edgestack-version-tag"])
        {
            assert_eq!(response.headers_named(name).len(), 1, "{what}: {name} {:?}", response.headers_named(name));
        }
        let timing = response.header("server-timing").unwrap_or_else(|| panic!("no Server-Timing on {what}"));
        assert!(timing.contains("cache;desc=") && timing.contains("total;dur="), "{what}: {timing}");
        assert!(response.header("x-edgestack-db-requests").is_some(), "{what}");
    }
    // Whatever the handler does not mark public is never stored by a browser or a CDN.
    for (what, response) in &private {
        assert_eq!(response.header("cache-control"), Some("private, no-store"), "{what}");
        assert!(response.header("etag").is_none(), "{what}");
    }
    // The handler's own policy survives the worker's defaults.
    assert_eq!(public.header("cache-control"), Some("public, max-age=0, must-revalidate"));
    assert!(public.header("etag").is_some());
}

/// The worker hands the core its own origin (scheme, host and port of the request URL), which
/// a browser's `Origin` must match.
#[test]
fn state_changes_from_the_workers_own_origin_pass_csrf_and_others_do_not() {
    let app = spawn_app();
    let (owner, _) = app.signed_up_client();
    let cookie = format!("__Host-edgestack_session={}", owner.cookie().unwrap());
    let body = json!({"title": "from a page"}).to_string();
    let post = |origin: &str| {
        let headers = [("cookie", cookie.as_str()), ("content-type", "application/json"), ("origin", origin)];
        app.request("POST", "/api/notes", &headers, Some(body.as_bytes()))
    };

    let own = post(&app.dev.base_url);
    let foreign = post("https://evil.example");

    assert_eq!(own.status, 201, "{}", own.text());
    assert_eq!((foreign.status, foreign.error_code().as_str()), (403, "csrf"));
    let notes = owner.send("GET", "/api/notes", None).json();
    assert_eq!(notes["notes"].as_array().unwrap().len(), 1, "only the same-origin request wrote");
}

/// Over the wire as in-process (`crates/edgestack-core/tests/app/hostile.rs`): a session cookie
/// inside another cookie's value — planted by a sibling host, sent before the real one — is
/// that value's text, not a session (only `;` separates cookies).
#[test]
fn a_session_cookie_inside_another_cookies_value_is_not_read_over_the_wire() {
    let app = spawn_app();
    let (victim, _) = app.signed_up_client();
    let (planter, _) = app.signed_up_client();
    let planted = format!("planted=1,__Host-edgestack_session={}", planter.cookie().unwrap());
    let cookie = format!("{planted}; __Host-edgestack_session={}", victim.cookie().unwrap());

    let me = app.request("GET", "/api/me", &[("cookie", &cookie)], None);
    let planted_only = app.request("GET", "/api/me", &[("cookie", &planted)], None);

    let victims = victim.send("GET", "/api/me", None).json();
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["user"]["id"], victims["user"]["id"], "the victim's own session");
    assert_eq!((planted_only.status, planted_only.error_code().as_str()), (401, "unauthenticated"));
}

/// The runtime hands the worker a compressed body as sent: it would reach the JSON parser as a
/// syntax error. It is refused by its `Content-Encoding` (415, RFC 9110 §8.4), over the wire too.
#[test]
fn a_compressed_body_is_refused_by_its_content_encoding() {
    let app = spawn_app();
    let gzipped = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0xae, 0x05, 0x00];
    let headers = [("content-type", "application/csp-report"), ("content-encoding", "gzip")];
    let refused = app.request("POST", "/api/csp-reports", &headers, Some(&gzipped));
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (415, "unsupported_content_encoding"),
        "{}",
        refused.text()
    );
    assert_eq!(refused.header("accept-encoding"), Some("identity"));
}

/// A GET or HEAD may carry a body on the wire (HTTP/1.1 frames it like any other). A route that
/// takes none ignores it (docs/api.md), so one declared and never sent must not hold the answer:
/// the worker gave it up only for other methods, and `wrangler dev` waited to drain it — no
/// answer at all, not even the 408 a body route gives after 10 s.
#[test]
fn a_get_or_head_declaring_a_body_it_never_sends_is_answered_at_once() {
    let app = spawn_app();
    let address = app.dev.base_url.trim_start_matches("http://").to_string();
    for (method, path, framing) in [
        ("GET", "/api/health", "Content-Length: 100\r\n"),
        ("HEAD", "/api/health", "Content-Length: 100\r\n"),
        ("GET", "/api/public/notes", "Transfer-Encoding: chunked\r\n"),
        ("GET", "/api/me", "Content-Length: 100\r\n"),
    ] {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let sent = if framing.starts_with("Transfer") { "3\r\nabc\r\n" } else { "abc" };
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n{framing}Connection: close\r\n\r\n{sent}");
        stream.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let (answer, waited) = (String::from_utf8_lossy(&answer).into_owned(), started.elapsed());
        let expected = if path == "/api/me" { "HTTP/1.1 401" } else { "HTTP/1.1 200" };
        assert!(answer.starts_with(expected), "{method} {path} ({framing:?}) after {waited:?}: {answer:?}");
        assert!(waited < Duration::from_secs(5), "{method} {path}: {waited:?}");
    }
}
