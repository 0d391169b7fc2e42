//! Both read-cache tiers for public reads — isolate memory (5 s) in front of Workers KV (60 s) —
//! on the virtual clock: hits cost no round trip, each tier expires on time, a change is seen at
//! once by its author and by readers of the same isolate, KV failures or slowness fall through
//! to the database, `READ_CACHE=off` bypasses both, and public answers revalidate with ETags.

use edgestack_core::cache::{CacheKey, KV_TTL_SECONDS};
use serde_json::json;

use crate::support::{EndpointFault, Options, Stack, each_shape, signed_up_user};

fn all_pipelines(stack: &Stack, database: &str) -> u64 {
    [None, Some("eu"), Some("ap")].into_iter().map(|replica| stack.pipelines(database, replica)).sum()
}

fn kv_holds(stack: &Stack, key: &str) -> bool {
    stack.kv.borrow().settled(key, stack.now_ms()).is_some()
}

#[test]
fn one_round_trip_on_a_miss_none_on_a_hit() {
    each_shape(|mut stack| {
        let user = signed_up_user(&mut stack, "cached@example.com");
        let id = user.publish_note(&mut stack, "cached", "body");
        let reader = stack.client("na");
        let db = stack.notes_db();

        let before = all_pipelines(&stack, db);
        let miss = stack.send(reader.get(&format!("/api/public/notes/{id}")).send());
        let after_miss = all_pipelines(&stack, db);
        let hit = stack.send(reader.get(&format!("/api/public/notes/{id}")).send());
        let after_hit = all_pipelines(&stack, db);
        let private = stack.send(user.get("/api/notes").send());
        let after_private = all_pipelines(&stack, db);

        assert_eq!((miss.cache_status().as_str(), miss.db_requests(), after_miss - before), ("miss", 1, 1));
        assert_eq!((hit.cache_status().as_str(), hit.db_requests(), after_hit - after_miss), ("hit-memory", 0, 0));
        assert!(hit.db_targets().is_empty());
        assert_eq!((private.cache_status().as_str(), after_private - after_hit), ("none", 1));
        assert_eq!(miss.json(), hit.json());
        assert_eq!(miss.header("etag"), hit.header("etag"));
    });
}

#[test]
fn the_cache_serves_kv_after_memory_expires_and_the_author_never_sees_stale_data() {
    each_shape(|mut stack| {
        let author = signed_up_user(&mut stack, "author@example.com");
        let id = author.publish_note(&mut stack, "v1", "first");
        let reader = stack.client("na");
        let path = format!("/api/public/notes/{id}");
        assert_eq!(stack.send(reader.get(&path).send()).cache_status(), "miss");
        stack.advance(100.0);
        assert!(kv_holds(&stack, &CacheKey::public_note(&id).key), "a miss fills KV in the background");

        stack.advance(5_500.0);
        let from_kv = stack.send(reader.get(&path).send());
        assert_eq!(from_kv.cache_status(), "hit-kv", "memory tier expired after 5 s, KV still holds it");
        assert_eq!(from_kv.db_requests(), 0);

        let edit = stack.send(author.patch(&format!("/api/notes/{id}")).json(json!({"body": "second"})).send());
        assert_eq!(edit.status(), 200);
        let author_view = stack.send(author.get(&path).send());
        assert_eq!(author_view.json()["note"]["body"], "second", "read-your-writes through the cache");
        let reader_view = stack.send(reader.get(&path).send());
        assert_eq!(reader_view.json()["note"]["body"], "second", "the change invalidated this location's cache");
        stack.send(author.delete(&format!("/api/notes/{id}/publication")).send());
        assert_eq!(stack.send(author.get(&path).send()).status(), 404);
        assert_eq!(stack.send(reader.get(&path).send()).status(), 404);
    });
}

#[test]
fn the_memory_tier_lives_five_seconds_and_kv_sixty() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "ttl@example.com");
    let id = author.publish_note(&mut stack, "ttl", "");
    let reader = stack.client("na");
    let path = format!("/api/public/notes/{id}");
    assert_eq!(stack.send(reader.get(&path).send()).cache_status(), "miss");
    let filled_at = stack.now_ms();
    let status_at = |stack: &mut Stack, after_ms: f64| {
        stack.advance(filled_at + after_ms - stack.now_ms());
        stack.send(reader.get(&path).send()).cache_status()
    };

    assert_eq!(status_at(&mut stack, 4_900.0), "hit-memory");
    assert_eq!(status_at(&mut stack, 5_100.0), "hit-kv");
    assert_eq!(status_at(&mut stack, 5_200.0), "hit-memory", "a KV hit refills the memory tier");
    assert_eq!(status_at(&mut stack, 54_000.0), "hit-kv", "the memory copy lived 5 s, KV's lives on");
    assert_eq!(status_at(&mut stack, 61_000.0), "miss", "the KV entry expired after 60 s");
}

#[test]
fn a_failing_kv_falls_through_to_the_database() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "nokv@example.com");
    let id = author.publish_note(&mut stack, "no kv", "still served");
    stack.kv.borrow_mut().failing = true;
    let reader = stack.client("na");
    let path = format!("/api/public/notes/{id}");

    let first = stack.send(reader.get(&path).send());
    let second = stack.send(reader.get(&path).send());
    stack.advance(5_500.0);
    let after_memory_expired = stack.send(reader.get(&path).send());

    assert_eq!((first.status(), first.cache_status().as_str()), (200, "miss"));
    assert_eq!(second.cache_status(), "hit-memory", "the isolate's tier works without KV");
    assert_eq!((after_memory_expired.status(), after_memory_expired.cache_status().as_str()), (200, "miss"));
    assert_eq!(after_memory_expired.db_targets(), ["primary"], "KV failed, the database answered");
    assert_eq!(after_memory_expired.json()["note"]["body"], "still served");
    assert!(
        !stack.logs_containing(&format!("KV read of {}", CacheKey::public_note(&id).key)).is_empty(),
        "the failure is logged"
    );
}

#[test]
fn a_slow_kv_is_abandoned_after_200_ms_for_the_database() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "slowkv@example.com");
    let id = author.publish_note(&mut stack, "slow kv", "");
    let reader = stack.client("na");
    let path = format!("/api/public/notes/{id}");
    assert_eq!(stack.send(reader.get(&path).send()).cache_status(), "miss");
    stack.advance(5_500.0);
    stack.net.kv_latency_ms.set(150.0);

    let started = stack.now_ms();
    let slow = stack.send(reader.get(&path).send());
    let elapsed = stack.now_ms() - started;

    assert_eq!((slow.status(), slow.cache_status().as_str()), (200, "miss"), "KV holds it, but too slowly");
    assert_eq!(slow.db_targets(), ["primary"]);
    assert!((200.0..215.0).contains(&elapsed), "KV's 200 ms, then the database: {elapsed} ms");
}

#[test]
fn another_location_reads_the_kv_entry_once_it_has_propagated() {
    let mut stack =
        Stack::new(Options { locations: vec!["na", "eu"], kv_propagation_ms: 1_000.0, ..Options::default() });
    let author = signed_up_user(&mut stack, "spread@example.com");
    let id = author.publish_note(&mut stack, "spread", "");
    let path = format!("/api/public/notes/{id}");
    assert_eq!(stack.send(stack.client("na").get(&path).send()).cache_status(), "miss");

    stack.advance(2_000.0);
    let from_eu = stack.send(stack.client("eu").get(&path).send());

    assert_eq!(from_eu.cache_status(), "hit-kv", "eu has its own memory tier but shares KV");
    assert_eq!(from_eu.db_requests(), 0);
}

#[test]
fn read_cache_off_bypasses_both_tiers() {
    let mut stack = Stack::new(Options { vars: vec![("READ_CACHE", "off".into())], ..Options::default() });
    let author = signed_up_user(&mut stack, "off@example.com");
    let id = author.publish_note(&mut stack, "uncached", "");
    let reader = stack.client("na");

    for path in [format!("/api/public/notes/{id}"), "/api/public/notes".to_string()] {
        for _ in 0..2 {
            let response = stack.send(reader.get(&path).send());
            assert_eq!((response.status(), response.cache_status().as_str()), (200, "bypass"), "{path}");
            assert_eq!(response.db_requests(), 1, "{path}");
            assert_eq!(response.header("cache-control"), Some("public, max-age=0, must-revalidate"));
        }
    }
    stack.advance(100.0);
    assert!(!kv_holds(&stack, &CacheKey::public_note(&id).key), "nothing is written to KV");
}

#[test]
fn a_change_leaves_a_floor_in_kv_for_other_isolates() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "floor@example.com");
    let id = author.publish_note(&mut stack, "floored", "");
    stack.advance(2_000.0);

    stack.send(author.delete(&format!("/api/notes/{id}/publication")).send());
    stack.advance(2_000.0);

    let floor = stack.kv.borrow().settled(&format!("v1/floor/note/{id}"), stack.now_ms());
    let floor: u64 = String::from_utf8(floor.expect("a floor for the note")).unwrap().parse().unwrap();
    assert_eq!(floor, stack.replication_index("main", None), "the floor is the change's replication index");
    assert!(stack.kv.borrow().settled("v1/floor/feed", stack.now_ms()).is_some(), "and one for the feed");
}

#[test]
fn public_reads_revalidate_with_etags_and_private_ones_have_none() {
    each_shape(|mut stack| {
        let author = signed_up_user(&mut stack, "etag@example.com");
        author.publish_note(&mut stack, "etag", "");
        let anonymous = stack.client("na");

        let first = stack.send(anonymous.get("/api/public/notes").send());
        let etag = first.header("etag").unwrap().to_string();
        let again = stack.send(anonymous.get("/api/public/notes").header("if-none-match", &etag).send());
        let private = stack.send(author.get("/api/notes").send());

        assert_eq!(first.header("cache-control"), Some("public, max-age=0, must-revalidate"));
        assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong validator: {etag}");
        assert_eq!(again.status(), 304);
        assert!(again.0.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_eq!(private.status(), 200);
        assert!(private.header("etag").is_none());
        assert_eq!(private.header("cache-control"), None, "the worker adds `private, no-store` on the way out");

        author.publish_note(&mut stack, "another", "");
        let changed = stack.send(anonymous.get("/api/public/notes").header("if-none-match", &etag).send());
        assert_eq!(changed.status(), 200, "a change makes the old validator stale");
        assert_ne!(changed.header("etag"), Some(etag.as_str()));
    });
}

/// A review's report: a KV copy read late in its life was kept in the reading isolate's memory
/// for a fresh 5 s, so where the bound falls back to an entry's lifetime (an unpublish whose
/// answer was lost leaves no floor) the note was served 63 s after its fill. A copy lives
/// 60 s from its fill in either tier.
#[test]
fn a_copy_read_from_kv_late_in_its_life_is_not_served_past_it() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "author@example.com");
    let id = author.publish_note(&mut stack, "note", "");
    stack.replicate();
    stack.advance(2_000.0);
    let path = format!("/api/public/notes/{id}");
    let filled = stack.send(stack.client_in_region("na").get(&path).send());
    assert_eq!((filled.status(), filled.cache_status().as_str()), (200, "miss"));
    let filled_at = stack.now_ms();

    // The unpublish commits, but its answer misses the primary's deadline: no floor is left.
    stack.advance(1_000.0);
    stack.net.set_fault("main", None, EndpointFault { extra_latency_ms: 3_000.0, ..EndpointFault::default() });
    let lost = stack.send(author.delete(&format!("/api/notes/{id}/publication")).send());
    assert_eq!(lost.status(), 503, "{}", lost.text());
    stack.net.set_fault("main", None, EndpointFault::default());

    let reader = stack.client_of_another_isolate("na");
    stack.advance(filled_at + 59_900.0 - stack.now_ms());
    let near_the_end = stack.send(reader.get(&path).send());
    assert_eq!((near_the_end.status(), near_the_end.cache_status().as_str()), (200, "hit-kv"));
    stack.advance(filled_at + f64::from(KV_TTL_SECONDS) * 1000.0 - stack.now_ms());
    let past = stack.send(reader.get(&path).send());
    assert_eq!((past.status(), past.cache_status().as_str()), (404, "miss"), "{}", past.text());
}

/// A review's report: KV takes one write per second per key, so the floor of a change made
/// within a second of the isolate's previous floor write for the same scope reaches KV up to a
/// second later; another isolate of the location reading KV meanwhile keeps the replaced copy
/// its 5 s. The bound docs/edge-data-path.md gives that isolate counts that second: from
/// t + lag + 1 s + 5 s (lag 0 here: na reads its primary).
#[test]
fn another_isolate_sees_a_change_within_the_floor_writes_second_and_its_memory_tier() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "author@example.com");
    let id = author.create_note(&mut stack, "note", "");
    stack.replicate();
    let path = format!("/api/public/notes/{id}");
    let reader = stack.client_in_region("na");
    let other = stack.client_of_another_isolate("na");

    assert_eq!(stack.send(author.put(&format!("/api/notes/{id}/publication")).send()).status(), 200);
    let filled = stack.send(reader.get(&path).send());
    assert_eq!((filled.status(), filled.cache_status().as_str()), (200, "miss"));
    stack.advance(150.0);
    assert_eq!(stack.send(author.delete(&format!("/api/notes/{id}/publication")).send()).status(), 200);
    let t = stack.now_ms();
    stack.advance(700.0);
    let meanwhile = stack.send(other.get(&path).send());
    assert_eq!((meanwhile.status(), meanwhile.cache_status().as_str()), (200, "hit-kv"), "the floor is not in KV yet");

    stack.advance(t + 1_000.0 + 5_000.0 - stack.now_ms());
    let bound = stack.send(other.get(&path).send());
    assert_eq!(bound.status(), 404, "{:.0} ms after the change ({})", stack.now_ms() - t, bound.cache_status());
}
