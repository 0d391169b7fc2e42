use crate::helpers::{spawn_app, spawn_app_with};

#[test]
fn health_reports_version_region_and_no_secrets() {
    let app = spawn_app();

    let response = app.get("/api/health");

    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("cache-control"), Some("private, no-store"));
    let health = response.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["environment"], "development");
    assert_eq!(health["database"], "configured");
    let version_id = health["version"]["id"].as_str().unwrap();
    assert!(!version_id.is_empty(), "{health}");
    assert_eq!(response.header("x-edgestack-version-id"), Some(version_id));
    assert!(["na", "eu", "ap"].contains(&health["region"]["name"].as_str().unwrap()), "{health}");
    let text = response.text();
    assert!(!text.contains(&app.db.url) && !text.contains(&app.db.token), "{text}");
}

#[test]
fn region_override_header_works_only_in_development() {
    let dev = spawn_app();
    let health = dev.request("GET", "/api/health", &[("x-edgestack-region", "ap")], None).json();
    assert_eq!(
        (health["region"]["name"].as_str(), health["region"]["source"].as_str()),
        (Some("ap"), Some("dev_override"))
    );

    let production = spawn_app_with(&[("EDGESTACK_ENV", "production")]);
    let health = production.request("GET", "/api/health", &[("x-edgestack-region", "ap")], None).json();
    assert_eq!(health["environment"], "production");
    assert_eq!(health["region"]["source"], "cloudflare");
}

#[test]
fn head_is_answered_like_get() {
    let app = spawn_app();
    let get = app.get("/api/health");
    let head = app.request("HEAD", "/api/health", &[], None);
    assert_eq!(head.status, 200, "HEAD is routed wherever GET is, not refused with 405");
    for header in ["content-type", "cache-control", "x-edgestack-version-id", "content-security-policy"] {
        assert_eq!(head.header(header), get.header(header), "{header}");
    }
    assert!(head.header("server-timing").is_some());
}

/// A Rust panic traps the wasm instance; the next request must be answered by a reset one (the
/// glue's recovery, kept by `src/entry.mjs`), not by "Module terminated" for the isolate's life.
/// The panicking request itself gets the API's JSON 500 with the standard headers, not the
/// runtime's HTML error page.
#[test]
fn a_panic_costs_one_request_not_the_isolate() {
    let app = spawn_app_with(&[("EDGESTACK_ENV", "development"), ("EDGESTACK_INJECT_FAULT", "panic")]);
    assert_eq!(app.get("/api/public/notes").status, 200);
    assert_eq!(app.get("/api/public/notes").status, 200, "the isolate's cache works before the panic");

    let panicked = app.request("GET", "/api/public/notes", &[("x-edgestack-panic", "1")], None);

    assert_eq!(panicked.status, 500, "{}", panicked.text());
    assert_eq!(panicked.header("content-type"), Some("application/json"), "{}", panicked.text());
    assert_eq!(panicked.json()["error"]["code"], "internal", "{}", panicked.text());
    for header in ["x-edgestack-version-id", "content-security-policy", "cache-control"] {
        assert!(panicked.header(header).is_some(), "{header}: {:?}", panicked.text());
    }
    for attempt in 0..3 {
        let after = app.get("/api/public/notes");
        assert_eq!(after.status, 200, "request {attempt} after the panic: {}", after.text());
        assert!(after.json()["notes"].is_array());
    }
}
