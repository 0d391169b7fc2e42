//! Bodies on the wire: the worker refuses a body over 256 KiB while reading it, before the core
//! sees it (`src/http.rs`), and a refused content type comes back as the API's JSON error too.
//! Routing errors (JSON 404/405), malformed bodies and CSP reports are tested in-process:
//! `crates/edgestack-core/tests/app/system.rs`.

use edgestack_core::json_body::MAX_BODY_BYTES;

use crate::helpers::spawn_app;

#[test]
fn wrong_content_type_is_415_and_oversized_body_is_413() {
    let app = spawn_app();
    let response = app.request("POST", "/api/csp-reports", &[("content-type", "text/plain")], Some(b"{}"));
    assert_eq!(response.status, 415);
    assert_eq!(response.error_code(), "unsupported_media_type");

    let huge = format!("{{\"csp-report\": {{\"blocked-uri\": \"{}\"}}}}", "x".repeat(MAX_BODY_BYTES));
    // The worker answers while the client is still sending. A connection closed with input
    // unread can be reset under its answer, cutting the body on the way (wrangler dev's proxy;
    // seen once in CI): the answer is what is tested, so one cut short is asked for again.
    let post =
        || app.try_request("POST", "/api/csp-reports", &[("content-type", "application/json")], Some(huge.as_bytes()));
    let response = (0..3).find_map(|_| post().ok()).expect("three answers, each cut short");
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "body_too_large");
}
