//! Failover and token binding over `wrangler dev` (issues #13 and #17): what the real worker,
//! its KV binding and devdb processes show. `edge::` needs replicas (the single Worker; the
//! services pass of the suite skips it, as it skips `crate::edge`): a primary killed, a replica
//! promoted with `devdb promote`'s endpoint, the record written with `wrangler kv key put
//! --local`, and the worker writing to the new primary without a redeploy. The rest follows
//! `EDGESTACK_SHAPE`: a read-your-writes token is worth nothing for another database, and one
//! ahead of the primary is believed only up to it. Every branch is also tested in-process:
//! `crates/edgestack-core/tests/app/failover.rs`.

use edgestack_core::datapath::ConsistencyToken;
use serde_json::Value;

use crate::helpers::{TestApp, TestResponse, services_shape, spawn_app_with};

/// Shared by every Worker of the stack, so the services' cookies verify with one key: only
/// their binding to a database keeps them apart.
const CONSISTENCY_KEY: &str = "failover-test-consistency-key";

/// The database whose cookie the notes routes read, and that cookie's name.
fn notes_database() -> (&'static str, &'static str) {
    if services_shape() {
        ("notes", "__Host-edgestack_consistency_notes")
    } else {
        ("main", "__Host-edgestack_consistency")
    }
}

/// `(term, index)` of a read-your-writes cookie value (`2.<term>.<index>.<mac>`).
fn token_of(value: &str) -> (u64, u64) {
    let parts: Vec<&str> = value.split('.').collect();
    assert_eq!((parts.len(), parts[0]), (4, "2"), "not a v2 token: {value}");
    (parts[1].parse().unwrap(), parts[2].parse().unwrap())
}

/// The value `response` sets for cookie `name`, if it sets one.
fn set_cookie(response: &TestResponse, name: &str) -> Option<String> {
    response.headers_named("set-cookie").into_iter().find_map(|cookie| {
        cookie.split(';').next()?.split_once('=').filter(|(key, _)| *key == name).map(|(_, value)| value.to_string())
    })
}

fn replication_index(db: &local_stack::devdb::DevDb) -> u64 {
    let stats = db.stats().unwrap();
    let index = &stats["replication_index"];
    index.as_u64().or_else(|| index.as_str().and_then(|text| text.parse().ok())).unwrap_or_else(|| panic!("{stats}"))
}

fn server_timing_db_requests(response: &TestResponse) -> u64 {
    response.header("x-edgestack-db-requests").unwrap().parse().unwrap()
}

fn dev_with_key() -> [(&'static str, &'static str); 2] {
    [("EDGESTACK_ENV", "development"), ("CONSISTENCY_KEY", CONSISTENCY_KEY)]
}

/// A user who wrote a note, the database holding it, and the session cookie.
fn writer(app: &TestApp) -> (crate::helpers::TestClient<'_>, String) {
    let (client, _) = app.signed_up_client();
    client.create_note("mine", "");
    let session = client.cookie().unwrap();
    (client, session)
}

#[test]
fn a_token_ahead_of_the_primary_is_believed_only_up_to_it_and_corrected() {
    let app = spawn_app_with(&dev_with_key());
    let (database, cookie) = notes_database();
    let (_, session) = writer(&app);
    let db = app.notes_db.as_ref().unwrap_or(&app.db);
    let primary_index = replication_index(db);
    let ahead = ConsistencyToken { term: 0, replication_index: primary_index + 1_000 };
    let ahead = ahead.encode(CONSISTENCY_KEY.as_bytes(), database).unwrap();
    let cookies = format!("__Host-edgestack_session={session}; {cookie}={ahead}");

    let list = app.request("GET", "/api/notes", &[("cookie", &cookies), ("x-edgestack-client", "1")], None);

    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.db_targets(), ["primary"]);
    let corrected = set_cookie(&list, cookie).expect("the cookie is corrected");
    assert_eq!(token_of(&corrected).1, primary_index, "believed up to what the primary has");
}

/// Issue #17: in the services shape, the accounts service's cookie replayed as the notes
/// cookie sent every anonymous feed read past both caches to the notes primary. In one Worker,
/// a token signed with the same key for another database is refused alike.
#[test]
fn a_read_your_writes_cookie_is_worth_nothing_for_another_database() {
    let app = spawn_app_with(&dev_with_key());
    let (database, cookie) = notes_database();
    let (author, _) = app.signed_up_client();
    let id = author.create_note("public", "");
    assert_eq!(author.send("PUT", &format!("/api/notes/{id}/publication"), None).status, 200);
    for _ in 0..3 {
        app.signed_up_client();
    }
    let foreign = if services_shape() {
        author.cookie_named("__Host-edgestack_consistency_accounts").unwrap()
    } else {
        let index = replication_index(&app.db) + 1_000;
        ConsistencyToken { term: 0, replication_index: index }.encode(CONSISTENCY_KEY.as_bytes(), "accounts").unwrap()
    };
    let notes_db = app.notes_db.as_ref().unwrap_or(&app.db);
    assert!(token_of(&foreign).1 > replication_index(notes_db), "it would have skipped every cached entry");
    let warm = app.get("/api/public/notes");
    assert_eq!(warm.status, 200);
    let feed = |value: &str| app.request("GET", "/api/public/notes", &[("cookie", &format!("{cookie}={value}"))], None);

    let replayed = feed(&foreign);

    assert_eq!(replayed.status, 200, "{}", replayed.text());
    assert_eq!((replayed.cache_status().as_str(), server_timing_db_requests(&replayed)), ("hit-memory", 0));
    assert_eq!(set_cookie(&replayed, cookie), None);
    // The control: the same index signed for this database is honoured (past the cache, to the
    // primary, and capped there) — so the replayed cookie above was refused for its audience.
    let (_, index) = token_of(&foreign);
    let own = ConsistencyToken { term: 0, replication_index: index };
    let honoured = feed(&own.encode(CONSISTENCY_KEY.as_bytes(), database).unwrap());
    assert_eq!((honoured.status, honoured.cache_status().as_str()), (200, "miss"));
    assert!(honoured.db_targets().contains(&"primary".to_string()), "{:?}", honoured.db_targets());
    if services_shape() {
        // And the identity accounts issues names what it is and whom it is for.
        let identity = author.cookie_named("__Host-edgestack_identity").unwrap();
        let claims: Value = serde_json::from_slice(&base64url(identity.split('.').next().unwrap())).unwrap();
        assert_eq!((claims["typ"].as_str(), claims["aud"].as_str()), (Some("edgestack-identity"), Some("notes")));
    }
}

/// Unpadded base64url, enough to read a token's claims.
fn base64url(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in text.bytes() {
        bits = (bits << 6) | alphabet.iter().position(|a| *a == c).unwrap() as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
        }
    }
    bytes
}

/// The single Worker with replicas (the services pass skips `edge::`).
mod edge {
    use std::thread::sleep;
    use std::time::{Duration, Instant};

    use local_stack::devdb::{DevDb, Faults};
    use serde_json::json;

    use super::{replication_index, set_cookie, token_of};
    use crate::helpers::{TestApp, spawn_app_with_replicas};

    const DEV: &[(&str, &str)] = &[("EDGESTACK_ENV", "development")];
    const COOKIE: &str = "__Host-edgestack_consistency";

    fn replica<'a>(app: &'a TestApp, region: &str) -> &'a DevDb {
        &app.replicas.iter().find(|(name, _)| name == region).unwrap().1
    }

    fn wait_for_replica(app: &TestApp, region: &str) {
        let target = replication_index(&app.db);
        let deadline = Instant::now() + Duration::from_secs(10);
        while replication_index(replica(app, region)) < target {
            assert!(Instant::now() < deadline, "replica {region} did not catch up");
            sleep(Duration::from_millis(20));
        }
    }

    /// `devdb promote` on the replica, and the operator's `wrangler kv key put` of the record.
    fn promote_and_publish(app: &TestApp, region: &str) {
        let promoted = replica(app, region);
        promoted.promote().unwrap();
        let record = promoted.primary_record().unwrap();
        app.dev.kv_put(&app.dev.configs()[0], "CACHE", "v1/primary/main", &record).unwrap();
    }

    fn titles_on(app: &TestApp, db: &DevDb) -> Vec<String> {
        let mut titles = app.query_text_in(db, "SELECT title FROM notes");
        titles.sort();
        titles
    }

    #[test]
    fn the_worker_switches_to_the_promoted_replica_without_a_redeploy() {
        let app = spawn_app_with_replicas(&[("eu", 0)], DEV);
        let (writer, _) = app.signed_up_client();
        writer.create_note("before", "");
        // The answering node's term reaches the worker (`x-devdb-term`): the first primary's.
        assert_eq!(token_of(&writer.cookie_named(COOKIE).unwrap()).0, 1, "the token names term 1");
        wait_for_replica(&app, "eu");
        app.db.kill();
        let refused = writer.send("POST", "/api/notes", Some(&json!({"title": "refused"})));
        assert_eq!(refused.status, 503, "{}", refused.text());

        promote_and_publish(&app, "eu");
        // The first write after the record may still meet the dead primary (then the isolate
        // reads the record, and does not resend a write that may have run); the next one is
        // the new primary's.
        let started = Instant::now();
        let mut statuses = Vec::new();
        let written = loop {
            let response =
                writer.send("POST", "/api/notes", Some(&json!({"title": format!("after {}", statuses.len())})));
            statuses.push(response.status);
            if response.status == 201 {
                break response;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no write acknowledged: {statuses:?}");
            sleep(Duration::from_millis(300));
        };

        assert!(statuses.len() <= 3 && statuses[..statuses.len() - 1].iter().all(|s| *s == 503), "{statuses:?}");
        assert_eq!(written.db_targets(), ["primary"]);
        assert_eq!(token_of(&set_cookie(&written, COOKIE).unwrap()).0, 2, "a write of the new term");
        let acknowledged = written.json()["note"]["title"].as_str().unwrap().to_string();
        assert_eq!(titles_on(&app, replica(&app, "eu")), [acknowledged.clone(), "before".to_string()]);
        // The old primary comes back fenced; the worker keeps writing to the new one.
        app.db.restart().unwrap();
        let later = writer.send("POST", "/api/notes", Some(&json!({"title": "later"})));
        assert_eq!((later.status, later.db_targets()), (201, vec!["primary".to_string()]), "{}", later.text());
        assert_eq!(titles_on(&app, replica(&app, "eu")), [acknowledged, "before".into(), "later".into()]);
        assert_eq!(app.db.stats().unwrap()["role"], "fenced", "the old primary took no write");
    }

    /// The client's last write was acknowledged by the old primary and never reached the
    /// replica that was promoted. Its token asks for more than the new history holds: the new
    /// primary's answer caps it, and the client sees what survived at once, its cookie corrected.
    #[test]
    fn a_token_from_before_the_failover_sees_what_survived_and_is_corrected() {
        let app = spawn_app_with_replicas(&[("eu", 0)], DEV);
        let (writer, _) = app.signed_up_client();
        writer.create_note("kept", "");
        wait_for_replica(&app, "eu");
        replica(&app, "eu").set_faults(&Faults { lag_ms: Some(60_000), ..Faults::default() }).unwrap();
        writer.create_note("lost", "");
        let (_, index) = token_of(&writer.cookie_named(COOKIE).unwrap());
        app.db.kill();
        promote_and_publish(&app, "eu");
        let promoted_at = replication_index(replica(&app, "eu"));
        assert!(promoted_at < index, "the promoted replica lacks the last write");

        let list = writer.send("GET", "/api/notes", None);

        assert_eq!(list.status, 200, "{}", list.text());
        let notes = list.json()["notes"].clone();
        let titles: Vec<&str> = notes.as_array().unwrap().iter().map(|note| note["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["kept"]);
        assert_eq!(token_of(&set_cookie(&list, COOKIE).expect("corrected")).1, promoted_at);
        let again = writer.send("GET", "/api/notes", None);
        assert_eq!(
            (again.status, again.db_targets()),
            (200, vec!["primary".to_string()]),
            "no waiting for the lost index"
        );
    }
}
