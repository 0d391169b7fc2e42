//! The fairness check run before anything is measured: for every shape, edgestack and the peer
//! must answer with the same status, the same header names, the same header values (but for
//! those that name a version, a time or a signature), the same `Server-Timing` entries and the
//! same body — byte for byte where both read the same rows, else the same JSON value for value
//! but for ids and times (`VARYING_FIELDS`) — and the same refusals and revalidation on a few
//! probes beside the measured shapes (no session, an `If-Match` of another version, no CSRF
//! proof, a note that does not exist, a matching `If-None-Match` on the own and the public note). Any difference stops the bench with the list and both answers
//! saved for reading. `bench ab` holds its two builds to the same rules on the shape it
//! measures.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::report::Side;
use super::stack::{Shape, Stack};
use crate::Result;

/// Headers of the connection, not of the API: the runtime sets them.
const TRANSPORT_HEADERS: [&str; 5] = ["content-length", "date", "connection", "keep-alive", "transfer-encoding"];
/// Headers whose value differs between two correct answers; compared by form, not value.
const VARYING_HEADERS: [&str; 4] = ["x-edgestack-version-id", "x-edgestack-version-tag", "server-timing", "set-cookie"];

/// One answer as the check sees it.
pub struct Answer {
    pub status: u16,
    /// Lower-case names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    }

    fn dump(&self) -> String {
        let mut text = format!("HTTP {}\n", self.status);
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&self.body));
        text.push('\n');
        text
    }
}

/// `bench ab`'s check: builds A and B (at `a_url` and `b_url`) answer `shape` alike, by the
/// same rules as edgestack and the peer, so that a change measured cheaper did not get there by
/// answering something else. Both answers are saved in `dump_dir`.
pub fn same_builds(shape: &Shape, a_url: &str, b_url: &str, dump_dir: &Path) -> Result {
    std::fs::create_dir_all(dump_dir).map_err(|e| format!("{}: {e}", dump_dir.display()))?;
    let agent = agent();
    let mut answers = Vec::new();
    for (label, url) in [("a", a_url), ("b", b_url)] {
        let answer = settled_answer(&agent, url, shape)?;
        let dump = dump_dir.join(format!("{}-{label}.txt", shape.key));
        std::fs::write(&dump, answer.dump()).map_err(|e| format!("{}: {e}", dump.display()))?;
        answers.push(answer);
    }
    let differences = compare(shape, ("A", &answers[0]), ("B", &answers[1]));
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "bench ab: A and B do not answer {} alike, so their figures would not compare the same work:\n  {}\n(both answers are in {})",
            shape.name,
            differences.join("\n  "),
            dump_dir.display()
        ))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn same_answers(stack: &Stack, shapes: &[Shape], dump_dir: &Path) -> Result {
    std::fs::create_dir_all(dump_dir).map_err(|e| format!("{}: {e}", dump_dir.display()))?;
    let agent = agent();
    let mut differences = Vec::new();
    let mut etags = Etags::default();
    for shape in shapes {
        let mut answers = Vec::new();
        for side in Side::ALL {
            let base_url = &stack.session(side, shape.read_cache)?.load_url;
            let answer = settled_answer(&agent, base_url, shape)?;
            let dump = dump_dir.join(format!("{}-{}.txt", shape.key, side.as_str()));
            std::fs::write(&dump, answer.dump()).map_err(|e| format!("{}: {e}", dump.display()))?;
            answers.push(answer);
        }
        let [edgestack, peer, floor] = answers.as_slice() else { return Err("three answers per shape".into()) };
        let etag = edgestack.values("etag").first().map(|etag| etag.to_string());
        match shape.key {
            PUBLIC_CACHED => etags.public = etag,
            OWN_NOTE => etags.own = etag,
            _ => {}
        }
        differences.extend(
            compare(shape, ("edgestack", edgestack), ("the peer", peer))
                .into_iter()
                .map(|why| format!("{}: {why}", shape.name)),
        );
        if !(200..300).contains(&floor.status) {
            differences.push(format!("{}: the floor answered {}", shape.name, floor.status));
        }
    }
    for probe in probes(shapes, &etags) {
        let mut answers = Vec::new();
        for side in [Side::Edgestack, Side::Peer] {
            let answer = request(&agent, &stack.session(side, probe.read_cache)?.load_url, &probe)?;
            let dump = dump_dir.join(format!("{}-{}.txt", probe.key, side.as_str()));
            std::fs::write(&dump, answer.dump()).map_err(|e| format!("{}: {e}", dump.display()))?;
            answers.push(answer);
        }
        let [edgestack, peer] = answers.as_slice() else { return Err("two answers per probe".into()) };
        differences.extend(
            compare(&probe, ("edgestack", edgestack), ("the peer", peer))
                .into_iter()
                .map(|why| format!("{}: {why}", probe.name)),
        );
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "bench peer: edgestack and the peer do not answer alike, so their figures would not compare the same work:\n  {}\n(both answers of each shape are in {})",
            differences.join("\n  "),
            dump_dir.display()
        ))
    }
}

/// The measured shapes whose answers carry the ETags the revalidation probes send back.
const PUBLIC_CACHED: &str = "public-note-cached";
const OWN_NOTE: &str = "own-note";

/// The ETags edgestack sent on the measured shapes, for the revalidation probes.
#[derive(Default)]
struct Etags {
    public: Option<String>,
    own: Option<String>,
}
/// An id of the right form that no note has.
const UNKNOWN_NOTE_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// Error paths and revalidation next to the measured shapes, each asked once and never
/// measured: the peer must refuse and revalidate as edgestack does, word for word.
fn probes(shapes: &[Shape], etags: &Etags) -> Vec<Shape> {
    let find = |key: &str| shapes.iter().find(|shape| shape.key == key);
    let mut probes = Vec::new();
    if let Some(own) = find(OWN_NOTE) {
        probes.push(Shape {
            key: "probe-no-session",
            name: "GET /api/notes/{id} without a session (401)",
            headers: Vec::new(),
            same_body: true,
            expected_status: 401,
            ..own.clone()
        });
        let mut stale = own.headers.clone();
        stale.push(("If-Match", "\"0\"".to_string()));
        probes.push(Shape {
            key: "probe-stale-if-match",
            name: "GET /api/notes/{id} with an If-Match of another version (412)",
            headers: stale,
            same_body: true,
            expected_status: 412,
            ..own.clone()
        });
        probes.push(Shape {
            key: "probe-unknown-note",
            name: "GET /api/notes/{id} of no note (404)",
            path: format!("/api/notes/{UNKNOWN_NOTE_ID}"),
            same_body: true,
            expected_status: 404,
            ..own.clone()
        });
    }
    if let Some(create) = find("create-note") {
        let headers = create.headers.iter().filter(|(name, _)| !name.eq_ignore_ascii_case("x-edgestack-client"));
        probes.push(Shape {
            key: "probe-csrf",
            name: "POST /api/notes without X-Edgestack-Client (403)",
            headers: headers.cloned().collect(),
            same_body: true,
            expected_status: 403,
            ..create.clone()
        });
    }
    if let (Some(own), Some(etag)) = (find(OWN_NOTE), &etags.own) {
        let mut revalidate = own.headers.clone();
        revalidate.push(("If-None-Match", etag.clone()));
        probes.push(Shape {
            key: "probe-revalidate-own",
            name: "GET /api/notes/{id} with its ETag (304)",
            headers: revalidate,
            same_body: true,
            expected_status: 304,
            ..own.clone()
        });
    }
    if let (Some(public), Some(etag)) = (find(PUBLIC_CACHED), &etags.public) {
        probes.push(Shape {
            key: "probe-revalidate",
            name: "GET /api/public/notes/{id} with its ETag (304)",
            headers: vec![("If-None-Match", etag.to_string())],
            same_body: true,
            expected_status: 304,
            ..public.clone()
        });
    }
    probes
}

/// The shape's answer once caches have settled: a cache miss is asked again (the miss fills
/// the cache; a KV fill lands a moment later), as the shape will be served under load.
fn settled_answer(agent: &ureq::Agent, base_url: &str, shape: &Shape) -> Result<Answer> {
    let mut answer = request(agent, base_url, shape)?;
    for _ in 0..50 {
        if cache_status(&answer).as_deref() != Some("miss") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        answer = request(agent, base_url, shape)?;
    }
    Ok(answer)
}

fn request(agent: &ureq::Agent, base_url: &str, shape: &Shape) -> Result<Answer> {
    let mut request = ureq::http::Request::builder().method(shape.method).uri(format!("{base_url}{}", shape.path));
    for (name, value) in &shape.headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(shape.body.clone().unwrap_or_default().into_bytes())
        .map_err(|e| format!("{} {}: {e}", shape.method, shape.path))?;
    let mut response = agent.run(request).map_err(|e| format!("{} {base_url}{}: {e}", shape.method, shape.path))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_ascii_lowercase(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    // A 304 has no body to read (it may still name the encoding the 200 would have had).
    let body = if status == 304 {
        Vec::new()
    } else {
        response.body_mut().read_to_vec().map_err(|e| format!("{}: {e}", shape.path))?
    };
    Ok(Answer { status, headers, body })
}

/// Every way the second answer differs from the first for `shape`; each side is named by its
/// label.
fn compare(
    shape: &Shape,
    (first_label, first): (&str, &Answer),
    (second_label, second): (&str, &Answer),
) -> Vec<String> {
    let mut differences = Vec::new();
    if first.status != shape.expected_status || second.status != shape.expected_status {
        differences.push(format!(
            "status: {first_label} {}, {second_label} {} (expected {})",
            first.status, second.status, shape.expected_status
        ));
    }
    let names = |answer: &Answer| -> BTreeSet<String> {
        answer
            .headers
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| !TRANSPORT_HEADERS.contains(&name.as_str()))
            .collect()
    };
    let (first_names, second_names) = (names(first), names(second));
    for name in first_names.difference(&second_names) {
        differences.push(format!("header {name}: only {first_label} sends it"));
    }
    for name in second_names.difference(&first_names) {
        differences.push(format!("header {name}: only {second_label} sends it"));
    }
    for name in first_names.intersection(&second_names) {
        let (ours, theirs) = (first.values(name), second.values(name));
        let (ours, theirs): (Vec<String>, Vec<String>) = match name.as_str() {
            "server-timing" => {
                (ours.iter().map(|v| timing_form(v)).collect(), theirs.iter().map(|v| timing_form(v)).collect())
            }
            "set-cookie" => {
                (ours.iter().map(|v| cookie_form(v)).collect(), theirs.iter().map(|v| cookie_form(v)).collect())
            }
            // An owner's note is tagged by its version (`updated_at`): a time where the bodies
            // hold one (a write), so compared like them, by form.
            "etag" if !shape.same_body => {
                (ours.iter().map(|v| etag_form(v)).collect(), theirs.iter().map(|v| etag_form(v)).collect())
            }
            _ if VARYING_HEADERS.contains(&name.as_str()) => continue,
            _ => (ours.iter().map(|v| v.to_string()).collect(), theirs.iter().map(|v| v.to_string()).collect()),
        };
        if ours != theirs {
            differences.push(format!("header {name}: {first_label} {ours:?}, {second_label} {theirs:?}"));
        }
    }
    if shape.same_body {
        if first.body != second.body {
            differences.push(format!(
                "body: {first_label} {}, {second_label} {}",
                String::from_utf8_lossy(&first.body),
                String::from_utf8_lossy(&second.body)
            ));
        }
    } else if first.body != second.body {
        let masked = |answer: &Answer| serde_json::from_slice::<Value>(&answer.body).ok().map(|json| masked(&json));
        match (masked(first), masked(second)) {
            (Some(ours), Some(theirs)) if ours == theirs => {}
            (ours, theirs) => differences.push(format!(
                "JSON (fields that differ between two correct answers masked): {first_label} {ours:?}, {second_label} {theirs:?}"
            )),
        }
    }
    differences
}

/// `"1764561600123"` → `"digits"`: a strong tag of a version, whatever the version.
fn etag_form(header: &str) -> String {
    let digits = header.strip_prefix('"').and_then(|tag| tag.strip_suffix('"'));
    match digits {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => "\"digits\"".to_string(),
        _ => header.to_string(),
    }
}

/// `cache;desc=hit-memory, db;desc=primary;dur=1.2, total;dur=1.5` → `cache=hit, db=primary,
/// total`: what was done, not how long it took (a memory hit and a KV hit are both hits).
fn timing_form(header: &str) -> String {
    header
        .split(',')
        .map(|metric| {
            let mut parts = metric.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let description = parts.find_map(|part| part.strip_prefix("desc=")).map(|d| d.trim_matches('"'));
            match (name, description) {
                ("cache", Some(d)) if d.starts_with("hit") => "cache=hit".to_string(),
                (name, Some(d)) => format!("{name}={d}"),
                (name, None) => name.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `Set-Cookie` without its value: the cookie's name and attributes.
fn cookie_form(header: &str) -> String {
    let mut parts = header.split(';').map(str::trim);
    let name = parts.next().and_then(|pair| pair.split_once('=')).map_or("", |(name, _)| name);
    std::iter::once(name).chain(parts).collect::<Vec<_>>().join("; ")
}

/// Fields whose value differs between two correct answers (a version's id and deploy time, a
/// new note's id and clock times); compared by form ([`json_form`]), every other value as is.
const VARYING_FIELDS: [&str; 5] = ["id", "timestamp", "created_at", "updated_at", "published_at"];

/// The JSON with the value of every [`VARYING_FIELDS`] member replaced by its form.
fn masked(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = if VARYING_FIELDS.contains(&key.as_str()) { json_form(value) } else { masked(value) };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(masked).collect()),
        leaf => leaf.clone(),
    }
}

/// The JSON with every leaf replaced by its type: two answers with the same keys and types of
/// values have the same form.
fn json_form(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(key, value)| (key.clone(), json_form(value))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(json_form).collect()),
        Value::String(_) => Value::from("string"),
        Value::Number(_) => Value::from("number"),
        Value::Bool(_) => Value::from("bool"),
        Value::Null => Value::Null,
    }
}

/// The `cache;desc=…` of an answer's `Server-Timing`.
fn cache_status(answer: &Answer) -> Option<String> {
    answer.values("server-timing").iter().flat_map(|header| header.split(',')).find_map(|metric| {
        let mut parts = metric.split(';').map(str::trim);
        (parts.next() == Some("cache")).then(|| parts.find_map(|part| part.strip_prefix("desc=")).map(String::from))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
        Answer {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn shape(same_body: bool) -> Shape {
        Shape {
            key: "k",
            name: "GET /x",
            method: "GET",
            path: "/x".into(),
            read_cache: true,
            headers: Vec::new(),
            body: None,
            same_body,
            expected_status: 200,
            rotating_cookies: Vec::new(),
        }
    }

    #[test]
    fn alike_answers_pass_even_with_different_timings_versions_and_cache_tiers() {
        let ours = answer(
            200,
            &[
                ("content-type", "application/json"),
                ("server-timing", "cache;desc=hit-memory, total;dur=0.0"),
                ("x-edgestack-version-id", "a"),
                ("content-length", "11"),
            ],
            r#"{"a":1}"#,
        );
        let theirs = answer(
            200,
            &[
                ("content-type", "application/json"),
                ("server-timing", "cache;desc=hit-kv, total;dur=3.0"),
                ("x-edgestack-version-id", "b"),
            ],
            r#"{"a":1}"#,
        );
        assert_eq!(compare(&shape(true), ("edgestack", &ours), ("the peer", &theirs)), Vec::<String>::new());
    }

    #[test]
    fn differences_are_named() {
        let ours = answer(
            200,
            &[
                ("cache-control", "private, no-store"),
                ("etag", "\"x\""),
                ("server-timing", "cache;desc=none, db;desc=primary;dur=1, total;dur=1"),
            ],
            r#"{"note":{"id":"a","n":1}}"#,
        );
        let theirs = answer(
            201,
            &[("cache-control", "no-store"), ("server-timing", "cache;desc=none, total;dur=1")],
            r#"{"note":{"id":"b","n":"1"}}"#,
        );
        let found = compare(&shape(false), ("edgestack", &ours), ("the peer", &theirs)).join("\n");
        for expected in [
            "status: edgestack 200, the peer 201",
            "header etag: only edgestack",
            "header cache-control",
            "header server-timing",
            "JSON (fields that differ between two correct answers masked)",
        ] {
            assert!(found.contains(expected), "{expected} in:\n{found}");
        }
        let bytes = compare(&shape(true), ("A", &ours), ("B", &theirs)).join("\n");
        assert!(!bytes.contains("JSON ("), "byte comparison instead");
        assert!(bytes.contains("status: A 200, B 201"), "each side named by its label:\n{bytes}");
    }

    #[test]
    fn a_writes_etags_are_compared_by_form_and_a_reads_by_value() {
        let tagged = |etag: &str| answer(200, &[("etag", etag)], r#"{"note":{"id":"a"}}"#);
        let (first, later) = (tagged("\"1764561600123\""), tagged("\"1764561600999\""));
        assert_eq!(compare(&shape(false), ("A", &first), ("B", &later)), Vec::<String>::new());
        for other in ["W/\"1764561600999\"", "\"abc\"", "\"\""] {
            let found = compare(&shape(false), ("A", &first), ("B", &tagged(other))).join("\n");
            assert!(found.contains("header etag"), "{other}: {found}");
        }
        let found = compare(&shape(true), ("A", &first), ("B", &later)).join("\n");
        assert!(found.contains("header etag"), "the same rows read give the same tag: {found}");
    }

    #[test]
    fn json_answers_differ_by_any_value_but_ids_and_times() {
        let health = |id: &str, at: &str, region: &str| {
            let body = format!(
                r#"{{"status":"ok","version":{{"id":"{id}","timestamp":"{at}"}},"region":{{"name":"{region}","colo":"DFW"}}}}"#
            );
            answer(200, &[("content-type", "application/json")], &body)
        };
        let ours = health("a", "2026-12-01T04:20:21.644Z", "na");
        let redeployed = health("b", "2026-12-01T04:20:25.594Z", "na");
        assert_eq!(compare(&shape(false), ("A", &ours), ("B", &redeployed)), Vec::<String>::new());
        let elsewhere = health("a", "2026-12-01T04:20:21.644Z", "eu");
        assert_eq!(compare(&shape(false), ("A", &ours), ("B", &elsewhere)).len(), 1, "a region is a value, not a form");
        let note = |id: &str, title: &str, at: u64| {
            let body = format!(r#"{{"note":{{"id":"{id}","title":"{title}","published_at":null,"created_at":{at}}}}}"#);
            answer(201, &[], &body)
        };
        let mut create = shape(false);
        create.expected_status = 201;
        assert!(compare(&create, ("A", &note("x", "t", 1)), ("B", &note("y", "t", 2))).is_empty());
        assert_eq!(compare(&create, ("A", &note("x", "t", 1)), ("B", &note("x", "u", 1))).len(), 1, "another title");
        let empty = answer(200, &[], "");
        assert!(compare(&shape(false), ("A", &empty), ("B", &empty)).is_empty(), "the same bytes need not be JSON");
        let not_json = answer(200, &[], "ok");
        assert_eq!(compare(&shape(false), ("A", &empty), ("B", &not_json)).len(), 1);
    }

    #[test]
    fn probes_ask_for_each_refusal_and_the_revalidation() {
        let seed = super::super::stack::Seed {
            session_token: "t".into(),
            note_ids: vec!["n".into()],
            writer_tokens: vec!["w".into()],
        };
        let shapes = super::super::stack::shapes(&seed);
        let etags = Etags { public: Some("\"e\"".into()), own: Some("\"1\"".into()) };
        let probes = probes(&shapes, &etags);
        let statuses: Vec<u16> = probes.iter().map(|probe| probe.expected_status).collect();
        assert_eq!(statuses, [401, 412, 404, 403, 304, 304]);
        assert!(probes[0].headers.is_empty(), "no session cookie");
        assert!(probes[1].headers.iter().any(|(name, _)| *name == "Cookie"), "signed in, only the version is wrong");
        assert!(probes[1].headers.iter().any(|(name, _)| *name == "If-Match"));
        assert!(!probes[3].headers.iter().any(|(name, _)| *name == "X-Edgestack-Client"));
        assert!(probes[3].headers.iter().any(|(name, _)| *name == "Cookie"), "signed in, only the proof is missing");
        assert!(probes[4].headers.contains(&("If-None-Match", "\"1\"".to_string())));
        assert!(probes[4].headers.iter().any(|(name, _)| *name == "Cookie"), "the owner revalidates");
        assert_eq!(probes[5].headers, vec![("If-None-Match", "\"e\"".to_string())]);
        assert_eq!(super::probes(&shapes, &Etags::default()).len(), 4, "no ETag, no revalidation probe");
    }

    #[test]
    fn cookies_compare_without_their_values() {
        assert_eq!(cookie_form("c=1.abc; Path=/; Secure; Max-Age=300"), "c; Path=/; Secure; Max-Age=300");
        assert_eq!(
            timing_form("cache;desc=bypass, db;desc=primary;dur=1.2, total;dur=3.4"),
            "cache=bypass, db=primary, total"
        );
    }
}
