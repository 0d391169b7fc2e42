//! Hostile input: 1,000 malformed pipeline/cursor bodies each get a 4xx JSON error, the server
//! stays up, and no data changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, TOKEN, checksum, dump, must};

/// Small deterministic PRNG so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// A write that would change data if the body were (wrongly) half-executed.
const WRITE: &str = r#"{"type":"execute","stmt":{"sql":"DELETE FROM keep"}}"#;

fn hostile(rng: &mut Rng, i: usize) -> Vec<u8> {
    let bad_requests = [
        r#"{"type":"execute"}"#,
        r#"{"type":"execute","stmt":{"sql":42}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT ?","args":[{"type":"integer","value":"99999999999999999999"}]}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT ?","args":[{"type":"integer","value":1}]}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT ?","args":[{"type":"float","value":"1.5"}]}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT ?","args":[{"type":"blob","base64":"***"}]}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT ?","args":[{"type":"bigint","value":"1"}]}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT ?","args":{"a":1}}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT 1","sql_id":1e999}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT 1","want_rows":"yes"}}"#,
        r#"{"type":"execute","stmt":{"sql":"SELECT 1","named_args":[{"name":5}]}}"#,
        r#"{"type":"batch","batch":{"steps":[{"stmt":{"sql":"SELECT 1"},"condition":{"type":"ok","step":-1}}]}}"#,
        r#"{"type":"batch","batch":{"steps":[{"stmt":{"sql":"SELECT 1"},"condition":{"type":"maybe"}}]}}"#,
        r#"{"type":"batch","batch":{"steps":"all"}}"#,
        r#"{"type":"store_sql","sql_id":"one","sql":"SELECT 1"}"#,
        r#"{"type":"store_sql","sql_id":4294967296,"sql":"SELECT 1"}"#,
        r#"{"type":"close_sql"}"#,
        r#"{"type":"drop_database"}"#,
        r#"{"type":null}"#,
        r#"{}"#,
        r#"[]"#,
        r#"1e400"#,
        r#""execute""#,
    ];
    match i % 10 {
        // Not JSON at all.
        0 => {
            let n = 1 + (rng.next() % 300) as usize;
            (0..n).map(|_| (rng.next() % 256) as u8).collect()
        }
        // Truncated valid JSON.
        1 => {
            let full = format!(r#"{{"baton":null,"requests":[{WRITE},{{"type":"close"}}]}}"#);
            let cut = 1 + (rng.next() as usize % (full.len() - 1));
            full.as_bytes()[..cut].to_vec()
        }
        // Wrong top-level shapes.
        2 => rng
            .pick(&[
                "null",
                "[]",
                "{}",
                "42",
                r#""requests""#,
                r#"{"requests":{}}"#,
                r#"{"requests":null}"#,
                r#"{"requests":[],"baton":7}"#,
                r#"{"requests":"[]"}"#,
                r#"{"batch":{}}"#,
                r#"{"requests":[1,2,3]}"#,
                r#"{"requests":1e99999}"#,
            ])
            .as_bytes()
            .to_vec(),
        // A valid write followed by a malformed request: nothing may run.
        3..=6 => format!(r#"{{"requests":[{WRITE},{}]}}"#, rng.pick(&bad_requests)).into_bytes(),
        // Deep nesting.
        7 => {
            let depth = 200 + (rng.next() % 2000) as usize;
            format!(r#"{{"requests":[{}{}]}}"#, "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        // Huge numbers and strings where small ones belong.
        8 => format!(
            r#"{{"requests":[{WRITE},{{"type":"execute","stmt":{{"sql":"SELECT 1","sql_id":{}}}}}]}}"#,
            rng.pick(&["1e400", "-1e400", "99999999999999999999999", "18446744073709551616", "NaN", "1.5"])
        )
        .into_bytes(),
        // Invalid UTF-8 inside a string, or a lone surrogate.
        _ => {
            let mut b = format!(r#"{{"requests":[{WRITE},{{"type":"execute","stmt":{{"sql":"SELECT '"#).into_bytes();
            if rng.next().is_multiple_of(2) {
                b.extend_from_slice(&[0xff, 0xfe, 0xc0]);
            } else {
                b.extend_from_slice(br"\ud800");
            }
            b.extend_from_slice(br#"'"},"want_rows":7}]}"#);
            b
        }
    }
}

#[tokio::test]
async fn thousand_hostile_bodies_get_4xx_json_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::primary(&dir.path().join("db.sqlite"));
    must(&server.url, "CREATE TABLE keep(id INTEGER PRIMARY KEY, v TEXT)").await;
    must(&server.url, "INSERT INTO keep(v) VALUES ('a'), ('b'), ('c')").await;
    let before = checksum(&dump(&server.url).await);
    let index_before = common::index(&server.url).await;

    let client = common::client();
    let paths = ["/v2/pipeline", "/v3/pipeline", "/v3/cursor"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..1000 {
        let body = hostile(&mut rng, i);
        let path = paths[i % paths.len()];
        let resp = client
            .post(format!("{}{path}", server.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} dropped: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("request {i}: non-JSON answer {status}: {text}"));
        assert!(
            (400..500).contains(&status) && json["message"].is_string() && json["code"].is_string(),
            "request {i} to {path} got {status} {text} for body {}",
            String::from_utf8_lossy(&body)
        );
    }

    // Oversized bodies: 413 JSON, with and without a declared length.
    let huge = format!(r#"{{"requests":[{{"type":"execute","stmt":{{"sql":"SELECT '{}'"}}}}]}}"#, "x".repeat(5 << 20));
    let resp =
        client.post(format!("{}/v2/pipeline", server.url)).bearer_auth(TOKEN).body(huge.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.json::<serde_json::Value>().await.unwrap()["message"].is_string());
    let stream = futures_util::stream::iter(
        huge.into_bytes().chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let resp = client
        .post(format!("{}/v3/pipeline", server.url))
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    // The server may answer 413 before reading the rest, or reset the upload after answering.
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
    }

    // Still up, nothing changed.
    let health = client.get(format!("{}/health", server.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(checksum(&dump(&server.url).await), before);
    assert_eq!(common::index(&server.url).await, index_before);
}

/// Every refusal of devdb's HTTP API is `{"message", "code"}` JSON with its 4xx, whatever part
/// of the request is wrong (README, Endpoints). axum's own rejections answered plain text: a
/// malformed `/_devdb/log` query string was `400 Failed to deserialize query string: …` (and
/// came before the token check, so an unauthenticated caller learned the parameters), a method
/// an endpoint does not take was an empty 405.
#[tokio::test]
async fn every_refusal_of_the_http_api_is_json_with_its_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::primary(&dir.path().join("db.sqlite"));
    let client = common::client();
    let bad_queries = [
        "after=abc",
        "after=-1",
        "after=1&after=2",
        "wait_ms=soon",
        "limit=99999999999",
        "term=1.5",
        "after=%ZZ",
        "hash=",
    ];
    let mut cases: Vec<(reqwest::Method, String, bool, u16)> = Vec::new();
    for q in bad_queries {
        cases.push((reqwest::Method::GET, format!("/_devdb/log?{q}"), true, 400));
        // The token is checked before anything else about the request.
        cases.push((reqwest::Method::GET, format!("/_devdb/log?{q}"), false, 401));
    }
    let wrong_methods = [
        ("POST", "/_devdb/stats"),
        ("POST", "/_devdb/log"),
        ("POST", "/_devdb/primary"),
        ("GET", "/_devdb/promote"),
        ("GET", "/_devdb/follow"),
        ("PUT", "/_devdb/faults"),
        ("DELETE", "/_devdb/faults"),
        ("GET", "/v2/pipeline"),
        ("GET", "/v3/pipeline"),
        ("PATCH", "/v3/cursor"),
        ("POST", "/health"),
        ("POST", "/version"),
        ("DELETE", "/v3"),
    ];
    for (method, path) in wrong_methods {
        cases.push((method.parse().unwrap(), path.to_owned(), true, 405));
    }
    for path in ["/_devdb/nope", "/_devdb/log/", "/_devdb", "/v3/pipeline/x"] {
        cases.push((reqwest::Method::GET, path.to_owned(), true, 404));
    }
    for (method, path, with_token, want) in cases {
        let mut req = client.request(method.clone(), format!("{}{path}", server.url));
        if with_token {
            req = req.bearer_auth(TOKEN);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: non-JSON answer {status}: {text:?}"));
        assert!(
            status == want && json["message"].is_string() && json["code"].is_string(),
            "{method} {path} (token: {with_token}) answered {status} {text}, expected {want} JSON"
        );
        if want == 405 {
            assert!(allow.is_some_and(|a| !a.is_empty()), "{method} {path}: 405 without the methods it takes");
        }
    }
}
