use crate::helpers::spawn_app;

#[test]
fn unknown_api_path_is_json_404() {
    let app = spawn_app();
    for path in ["/api/nope", "/api/health/extra", "/api/../api/x"] {
        let response = app.get(path);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.error_code(), "not_found", "{path}");
    }
}

#[test]
fn wrong_method_is_json_405_with_allow() {
    let app = spawn_app();
    let response = app.request("DELETE", "/api/health", &[], None);
    assert_eq!(response.status, 405);
    assert_eq!(response.error_code(), "method_not_allowed");
    assert_eq!(response.header("allow"), Some("GET, HEAD"));

    let response = app.get("/api/csp-reports");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST"));
}

#[test]
fn malformed_json_body_is_json_400() {
    let app = spawn_app();
    for (body, code) in [
        ("{bad", "invalid_json"),
        ("", "empty_body"),
        ("[1, 2]", "invalid_body"),
        ("{\"csp-report\": 5}", "invalid_body"),
    ] {
        let response = app.post_json("/api/csp-reports", body);
        assert_eq!(response.status, 400, "{body:?}: {}", response.text());
        assert_eq!(response.error_code(), code, "{body:?}");
    }
}

#[test]
fn wrong_content_type_is_415_and_oversized_body_is_413() {
    let app = spawn_app();
    let response = app.request("POST", "/api/csp-reports", &[("content-type", "text/plain")], Some(b"{}"));
    assert_eq!(response.status, 415);
    assert_eq!(response.error_code(), "unsupported_media_type");

    let huge = format!("{{\"csp-report\": {{\"blocked-uri\": \"{}\"}}}}", "x".repeat(200_000));
    let response = app.post_json("/api/csp-reports", &huge);
    assert_eq!(response.status, 413);
    assert_eq!(response.error_code(), "body_too_large");
}

#[test]
fn well_formed_csp_report_is_accepted() {
    let app = spawn_app();
    let body = r#"{"csp-report":{"document-uri":"http://localhost/","violated-directive":"script-src","blocked-uri":"https://evil.example/x.js"}}"#;
    let response =
        app.request("POST", "/api/csp-reports", &[("content-type", "application/csp-report")], Some(body.as_bytes()));
    assert_eq!(response.status, 204, "{}", response.text());
}
