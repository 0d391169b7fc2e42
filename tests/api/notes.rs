//! A note's entity tag and its preconditions on the wire: the `ETag` the worker sends, a stale
//! `If-Match` refused with the API's JSON 412, a revalidation's 304 — through the entry to the
//! notes service in the services shape, which must forward both fields. The rules in full are tested in-process
//! (`crates/edgestack-core/tests/app/if_match.rs`).

use serde_json::json;

use crate::helpers::spawn_app;

#[test]
fn a_stale_if_match_is_412_and_the_current_tag_applies_the_edit() {
    let app = spawn_app();
    let (client, _) = app.signed_up_client();
    let created = client.send("POST", "/api/notes", Some(&json!({"title": "t", "body": "original"})));
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["note"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/notes/{id}");
    let stale = created.header("etag").expect("a created note has an ETag").to_string();
    assert_eq!(stale, format!("\"{}\"", created.json()["note"]["updated_at"]));

    let theirs = client.send_with("PATCH", &path, &[("if-match", &stale)], Some(&json!({"body": "theirs"})));
    assert_eq!(theirs.status, 200, "{}", theirs.text());
    let current = theirs.header("etag").expect("an edited note has an ETag").to_string();
    assert_ne!(current, stale);

    let mine = client.send_with("PATCH", &path, &[("if-match", &stale)], Some(&json!({"body": "mine"})));
    assert_eq!((mine.status, mine.error_code().as_str()), (412, "precondition_failed"));
    let read = client.send("GET", &path, None);
    assert_eq!((read.json()["note"]["body"].as_str(), read.header("etag")), (Some("theirs"), Some(current.as_str())));

    let revalidated = client.send_with("GET", &path, &[("if-none-match", &current)], None);
    assert_eq!((revalidated.status, revalidated.header("etag")), (304, Some(current.as_str())));
    assert!(revalidated.body.is_empty());

    // The runtime drops an empty If-Match; the API documents it as none.
    let unconditional = client.send_with("PATCH", &path, &[("if-match", "")], Some(&json!({"body": "theirs"})));
    assert_eq!(unconditional.status, 200, "{}", unconditional.text());
    let current = unconditional.header("etag").unwrap().to_string();

    let malformed = client.send_with("DELETE", &path, &[("if-match", "theirs")], None);
    assert_eq!((malformed.status, malformed.error_code().as_str()), (400, "invalid_if_match"));
    assert_eq!(client.send_with("DELETE", &path, &[("if-match", &current)], None).status, 204);
}
