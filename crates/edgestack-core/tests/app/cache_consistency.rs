//! Issue #11: no cache tier serves what the system has already changed beyond the reader's
//! replica lag, whatever fills it afterwards.

use serde_json::json;

use crate::support::{Client, Stack, signed_up};

/// A published note by a new author; waits until every replica has it.
fn published_note(stack: &mut Stack, author: &Client) -> String {
    let created = stack.send(author.post("/api/notes").json(json!({"title": "hello", "body": "world"})).send());
    assert_eq!(created.status(), 201, "{}", created.text());
    let id = created.json()["note"]["id"].as_str().unwrap().to_string();
    let published = stack.send(author.put(&format!("/api/notes/{id}/publication")).send());
    assert_eq!(published.status(), 200, "{}", published.text());
    stack.advance(1_000.0);
    id
}

#[test]
fn an_unpublished_note_is_not_refilled_from_a_lagging_replica() {
    let mut stack = Stack::monolith();
    let author = stack.client_in_region("na");
    signed_up(&mut stack, &author, "author@example.com");
    let id = published_note(&mut stack, &author);
    let eu = stack.client_in_region("eu");
    let na = stack.client_in_region("na");
    let path = format!("/api/public/notes/{id}");
    // Warm both tiers from the caught-up eu replica.
    assert_eq!(stack.send(eu.get(&path).send()).status(), 200);

    stack.set_lag(stack.notes_db(), "eu", 4_000.0);
    let unpublished = stack.send(author.delete(&format!("/api/notes/{id}/publication")).send());
    assert_eq!(unpublished.status(), 200, "{}", unpublished.text());
    // Allowed: the eu replica is 4 s behind.
    let during_lag = stack.send(eu.get(&path).send());
    assert_eq!(during_lag.status(), 200, "{}", during_lag.text());

    stack.advance(6_500.0);
    for (client, region) in [(&eu, "eu"), (&na, "na")] {
        let after = stack.send(client.get(&path).send());
        assert_eq!(after.status(), 404, "{region} after the lag: {} {:?}", after.text(), after.header("server-timing"));
        let feed = stack.send(client.get("/api/public/notes").send());
        let listed = feed.json()["notes"].as_array().unwrap().iter().any(|note| note["id"] == id.as_str());
        assert!(!listed, "{region}: the feed still lists the unpublished note ({})", feed.cache_status());
    }
}
