//! Health, CSP violation reports, routing errors (JSON 404/405), HEAD, `Server-Timing` on every
//! answer, injected faults and broken configuration — in both shapes; in the services shape the
//! entry answers these itself, without a hop.

use serde_json::json;

use crate::support::{Options, Shape, Stack, each_shape, signed_up_user};

#[test]
fn health_reports_status_version_region_and_database_without_secrets() {
    each_shape(|mut stack| {
        let client = stack.client_in_region("eu");

        let response = stack.send(client.get("/api/health").send());

        assert_eq!(response.status(), 200, "{}", response.text());
        assert_eq!(response.header("content-type"), Some("application/json"));
        let health = response.json();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["environment"], "development");
        assert_eq!(health["database"], "configured");
        assert_eq!(health["version"]["id"], "sim-version");
        assert_eq!(health["region"]["name"], "eu", "{health}");
        assert_eq!(health["region"]["source"], "dev_override");
        assert_eq!(response.db_requests(), 0, "health never touches a database");
        let text = response.text();
        for secret in ["sim-token", "sim-consistency-key", ".sim", "LIBSQL"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    });
}

#[test]
fn the_entry_health_reports_each_service_and_an_unreachable_one() {
    let mut stack = Stack::services();
    let client = stack.client("na");

    let health = stack.send(client.get("/api/health").send());

    assert_eq!(health.status(), 200);
    let body = health.json();
    assert_eq!(body["database"], "configured", "{body}");
    for service in ["accounts", "notes"] {
        assert_eq!(body["services"][service]["status"], "ok", "{body}");
        assert_eq!(body["services"][service]["database"], "configured", "{body}");
        assert_eq!(body["services"][service]["version"]["id"], "sim-version", "{body}");
    }

    stack.front().bindings.borrow_mut().remove("NOTES");
    let degraded = stack.send(client.get("/api/health").send());

    assert_eq!(degraded.status(), 200, "the entry itself is up");
    let body = degraded.json();
    assert_eq!(body["services"]["notes"]["status"], "unreachable", "{body}");
    assert_eq!(body["services"]["accounts"]["status"], "ok", "{body}");
    assert_eq!(body["database"], "not_configured", "one service cannot reach its database: {body}");
}

#[test]
fn a_well_formed_csp_report_is_accepted_and_logged_without_same_origin_proof() {
    each_shape(|mut stack| {
        let browser = stack.client("na");
        let body = br#"{"csp-report":{"document-uri":"http://localhost/","violated-directive":"script-src","blocked-uri":"https://evil.example/x.js"}}"#;

        // Browsers send reports on their own: no Origin, no client header.
        let response = stack.send(
            browser.bare("POST", "/api/csp-reports").header("content-type", "application/csp-report").body(body).send(),
        );

        assert_eq!(response.status(), 204, "{}", response.text());
        assert!(response.timing("hop").is_empty(), "the entry answers reports itself");
        let logged = stack.logs_containing("csp violation");
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].contains("directive=script-src") && logged[0].contains("blocked=https://evil.example/x.js"));
    });
}

fn check_csp_report(stack: &mut Stack, content_type: &str, body: &str, expected: (u16, &str)) {
    let client = stack.client("na");
    let response =
        stack.send(client.post("/api/csp-reports").header("content-type", content_type).body(body.as_bytes()).send());
    assert_eq!((response.status(), response.error_code().as_str()), expected, "{content_type} {body:?}");
}

#[test]
fn malformed_csp_reports_get_json_4xx() {
    each_shape(|mut stack| {
        check_csp_report(&mut stack, "application/json", "{bad", (400, "invalid_json"));
        let client = stack.client("na");
        let coded = client.post("/api/csp-reports").header("content-type", "application/csp-report");
        let coded = stack.send(coded.header("content-encoding", "br").body(b"\x0b\x02\x80{}\x03").send());
        assert_eq!((coded.status(), coded.error_code().as_str()), (415, "unsupported_content_encoding"));
        check_csp_report(&mut stack, "application/json", "", (400, "empty_body"));
        check_csp_report(&mut stack, "application/json", "[1, 2]", (400, "invalid_body"));
        check_csp_report(&mut stack, "application/json", "{\"csp-report\": 5}", (400, "invalid_body"));
        check_csp_report(&mut stack, "text/plain", "{}", (415, "unsupported_media_type"));
        let huge = format!(
            "{{\"csp-report\": {{\"blocked-uri\": \"{}\"}}}}",
            "x".repeat(edgestack_core::json_body::MAX_BODY_BYTES)
        );
        check_csp_report(&mut stack, "application/json", &huge, (413, "body_too_large"));
        assert!(stack.logs_containing("csp violation").is_empty());
    });
}

#[test]
fn unknown_api_paths_are_json_404_answered_without_a_hop() {
    each_shape(|mut stack| {
        let client = stack.client("na");
        for path in ["/api/nope", "/api/health/extra", "/api/../api/x", "/api/notes/x/y/z", "/api"] {
            let response = stack.send(client.get(path).send());
            assert_eq!((response.status(), response.error_code().as_str()), (404, "not_found"), "{path}");
            assert!(response.timing("hop").is_empty(), "{path} was forwarded");
        }
        // A hostile path is echoed at most 100 characters long.
        let long = format!("/api/{}", "a".repeat(5_000));
        let response = stack.send(client.get(&long).send());
        assert_eq!(response.status(), 404);
        assert!(response.json()["error"]["message"].as_str().unwrap().len() < 200);
    });
}

#[test]
fn wrong_methods_are_json_405_with_allow() {
    each_shape(|mut stack| {
        let client = stack.client("na");
        for (method, path, allow) in [
            ("DELETE", "/api/health", "GET, HEAD"),
            ("GET", "/api/csp-reports", "POST"),
            ("PUT", "/api/notes", "GET, POST, HEAD"),
            ("GET", "/api/sessions", "POST"),
            ("POST", "/api/public/notes", "GET, HEAD"),
        ] {
            let response = stack.send(client.bare(method, path).header("x-edgestack-client", "1").send());
            assert_eq!(
                (response.status(), response.error_code().as_str()),
                (405, "method_not_allowed"),
                "{method} {path}"
            );
            assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
        }
    });
}

#[test]
fn head_is_routed_wherever_get_is_and_has_no_body() {
    each_shape(|mut stack| {
        let author = signed_up_user(&mut stack, "head@example.com");
        let id = author.publish_note(&mut stack, "head", "body");
        for path in ["/api/health".to_string(), "/api/public/notes".into(), format!("/api/public/notes/{id}")] {
            let get = stack.send(author.get(&path).send());
            let head = stack.send(author.bare("HEAD", &path).send());
            assert_eq!(head.status(), 200, "{path}: HEAD is routed wherever GET is, not refused with 405");
            assert_eq!(get.status(), 200, "{path}");
            assert!(head.0.body.is_empty(), "{path}");
            assert!(!get.0.body.is_empty(), "{path}");
            for header in ["content-type", "cache-control", "etag"] {
                assert_eq!(head.header(header), get.header(header), "{path} {header}");
            }
            assert!(head.header("server-timing").is_some());
        }
        // A review's report: refusals kept their JSON body. A HEAD answer never has one
        // (RFC 9110 §9.3.2), whoever answers and whatever the status.
        let anonymous = stack.client("na");
        for (path, status) in [("/api/nope", 404), ("/api/csp-reports", 405), ("/api/me", 401)] {
            let head = stack.send(anonymous.bare("HEAD", path).send());
            assert_eq!((head.status(), head.0.body.len()), (status, 0), "HEAD {path}: {}", head.text());
            assert_eq!(head.header("content-type"), Some("application/json"), "HEAD {path}");
        }
    });
}

#[test]
fn every_api_response_carries_server_timing_and_a_round_trip_count() {
    each_shape(|mut stack| {
        let anonymous = stack.client("na");
        let responses = [
            ("health", stack.send(anonymous.get("/api/health").send())),
            ("404", stack.send(anonymous.get("/api/nope").send())),
            ("405", stack.send(anonymous.delete("/api/health").send())),
            ("401", stack.send(anonymous.get("/api/me").send())),
            ("403", stack.send(anonymous.bare("POST", "/api/notes").send())),
            ("feed", stack.send(anonymous.get("/api/public/notes").send())),
        ];
        for (what, response) in responses {
            let timing = response.header("server-timing").unwrap_or_else(|| panic!("none on {what}"));
            assert!(timing.contains("cache;desc=") && timing.contains("total;dur="), "{what}: {timing}");
            assert_eq!(response.db_requests() as usize, response.db_targets().len(), "{what}: {timing}");
        }
    });
}

#[test]
fn an_injected_error_fault_answers_500_everywhere_but_health() {
    let mut stack =
        Stack::new(Options { vars: vec![("EDGESTACK_INJECT_FAULT", "errors".into())], ..Options::default() });
    let client = stack.client("na");

    let health = stack.send(client.get("/api/health").send());
    let feed = stack.send(client.get("/api/public/notes").send());
    let sign_up = stack
        .send(client.post("/api/accounts").json(json!({"email": "a@example.com", "password": "long enough"})).send());

    assert_eq!(health.status(), 200);
    assert_eq!((feed.status(), feed.error_code().as_str()), (500, "injected_fault"));
    assert_eq!((sign_up.status(), sign_up.error_code().as_str()), (500, "injected_fault"));
    assert_eq!(stack.query_text("main", "SELECT email FROM users"), Vec::<String>::new(), "nothing was written");
}

#[test]
fn an_injected_slow_fault_delays_every_route_but_health() {
    let mut stack =
        Stack::new(Options { vars: vec![("EDGESTACK_INJECT_FAULT", "slow:700".into())], ..Options::default() });
    let client = stack.client("na");

    let started = stack.now_ms();
    assert_eq!(stack.send(client.get("/api/health").send()).status(), 200);
    let health_ms = stack.now_ms() - started;
    let started = stack.now_ms();
    assert_eq!(stack.send(client.get("/api/public/notes").send()).status(), 200);
    let feed_ms = stack.now_ms() - started;

    assert!(health_ms < 50.0, "health is never delayed: {health_ms} ms");
    assert!((700.0..800.0).contains(&feed_ms), "feed took {feed_ms} ms");
}

#[test]
fn a_misconfigured_worker_answers_json_500_and_logs_why() {
    each_shape(|mut stack| {
        stack.front().set_var("EDGESTACK_ENV", "staging");
        let client = stack.client("na");

        for path in ["/api/health", "/api/public/notes", "/api/me"] {
            let response = stack.send(client.get(path).send());
            assert_eq!((response.status(), response.error_code().as_str()), (500, "misconfigured"), "{path}");
            assert!(!response.text().contains("staging"), "the reason stays in the log: {}", response.text());
        }
        // Routing comes first: an unknown path is still a 404.
        assert_eq!(stack.send(client.get("/api/nope").send()).status(), 404);
        assert!(!stack.logs_containing("EDGESTACK_ENV must be").is_empty());
    });
}

#[test]
fn without_a_database_data_routes_answer_503_and_health_says_not_configured() {
    let mut stack = Stack::monolith();
    for name in ["LIBSQL_PRIMARY_URL", "LIBSQL_AUTH_TOKEN", "LIBSQL_REPLICAS", "CONSISTENCY_KEY"] {
        stack.front().vars.borrow_mut().remove(name);
    }
    let client = stack.client("na");

    let health = stack.send(client.get("/api/health").send());
    let feed = stack.send(client.get("/api/public/notes").send());

    assert_eq!(health.json()["database"], "not_configured");
    assert_eq!((feed.status(), feed.error_code().as_str()), (503, "database_not_configured"));
    assert_eq!(feed.header("retry-after"), Some("60"));
}

#[test]
fn production_refuses_development_only_settings() {
    for (name, value) in [("EDGESTACK_INJECT_FAULT", "errors"), ("EDGESTACK_DEV_REGION", "eu")] {
        let vars = vec![("EDGESTACK_ENV", "production".to_string()), (name, value.to_string())];
        let mut stack = Stack::new(Options { shape: Shape::Monolith, vars, ..Options::default() });
        let client = stack.client("na");
        let response = stack.send(client.get("/api/health").send());
        assert_eq!((response.status(), response.error_code().as_str()), (500, "misconfigured"), "{name}");
    }
}
