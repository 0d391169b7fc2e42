//! Writes that race: the note quota under concurrent creates, one email signed up twice at
//! once, the author paging the feed on another isolate while changing it, and a note published
//! while its owner's account is being deleted — each interleaving ordered by the harness.

use serde_json::json;

use crate::support::{Client, Options, PASSWORD, Response, Shape, Stack, signed_up};

fn status_and_code(response: &Response) -> (u16, String) {
    let code = if response.status() >= 400 { response.error_code() } else { String::new() };
    (response.status(), code)
}

fn seed_notes(stack: &Stack, user_id: &str, count: usize) {
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
         INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) \
         SELECT 'seed' || i, '{user_id}', 't', 'b', NULL, i, i FROM n"
    );
    stack.query(stack.notes_db(), &sql);
}

/// Three creates at once from two locations against one free slot and a half: the quota is
/// checked in the insert, so exactly as many succeed as fit.
#[test]
fn the_quota_holds_under_concurrent_creates() {
    for shape in [Shape::Monolith, Shape::Services] {
        let mut stack = Stack::new(Options { shape, locations: vec!["na", "ap"], ..Options::default() });
        let near = stack.client("na");
        signed_up(&mut stack, &near, "quota@example.com");
        let far = stack.client("ap");
        let session = edgestack_core::accounts::session::COOKIE_NAME;
        far.set_cookie(session, &near.cookie(session).unwrap());
        let user_id = near.user_id(&mut stack);
        seed_notes(&stack, &user_id, 998);
        stack.replicate();
        let create = |client: &Client, n: u32| client.post("/api/notes").json(json!({"title": format!("c{n}")}));
        let a = stack.rt.spawn(create(&far, 1).send());
        let b = stack.rt.spawn(create(&far, 2).send());
        stack.advance(20.0);
        let c = stack.send(create(&near, 3).send());
        let (a, b) = (stack.rt.wait(a), stack.rt.wait(b));
        let created = [&a, &b, &c].iter().filter(|r| r.status() == 201).count();
        let refused: Vec<_> = [&a, &b, &c].iter().filter(|r| r.status() != 201).map(|r| status_and_code(r)).collect();
        assert_eq!(created, 2, "{shape:?}: {refused:?}");
        assert_eq!(refused, [(403, "quota_exceeded".to_string())], "{shape:?}");
        let count =
            stack.query_text(stack.notes_db(), &format!("SELECT count(*) FROM notes WHERE owner_id = '{user_id}'"));
        assert_eq!(count, ["1000"], "{shape:?}");
    }
}

/// The same email signed up from two places at once: one account, the other told 409.
#[test]
fn one_email_signed_up_twice_at_once_makes_one_account() {
    for shape in [Shape::Monolith, Shape::Services] {
        let mut stack = Stack::new(Options { shape, locations: vec!["na", "ap"], ..Options::default() });
        let far = stack.client("ap");
        let near = stack.client("na");
        let body = json!({"email": "twice@example.com", "password": PASSWORD});
        let (first, second) = stack.overlapping(
            far.post("/api/accounts").json(body.clone()),
            30.0,
            near.post("/api/accounts").json(body),
        );
        let mut outcomes = [status_and_code(&first), status_and_code(&second)];
        outcomes.sort();
        assert_eq!(outcomes, [(201, String::new()), (409, "email_taken".to_string())], "{shape:?}");
        let users = stack.query_text(stack.accounts_db(), "SELECT count(*) FROM users");
        assert_eq!(users, ["1"], "{shape:?}");
        let winner = if first.status() == 201 { &far } else { &near };
        let loser = if first.status() == 201 { &near } else { &far };
        assert_eq!(stack.send(winner.get("/api/me").send()).status(), 200, "{shape:?}");
        assert_eq!(stack.send(loser.get("/api/me").send()).status(), 401, "{shape:?}");
    }
}

fn page_ids(response: &Response) -> (Vec<String>, Option<String>) {
    assert_eq!(response.status(), 200, "{}", response.text());
    let body = response.json();
    let ids = body["notes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect();
    (ids, body["next_cursor"].as_str().map(str::to_string))
}

fn walk_feed(stack: &mut Stack, client: &Client, limit: u32) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/public/notes?limit={limit}&cursor={cursor}"),
            None => format!("/api/public/notes?limit={limit}"),
        };
        let (ids, next) = page_ids(&stack.send(client.get(&path).send()));
        all.extend(ids);
        match next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

/// The author pages through the feed on another isolate whose cache holds every page from
/// before a delete, an unpublish and a publish the author made on the first isolate: every
/// page must show the author's changes, with no note twice.
#[test]
fn the_authors_feed_pages_on_another_isolate_show_every_change_and_no_note_twice() {
    // `client_of_another_isolate` makes a front Worker without bindings: the single Worker only.
    for shape in [Shape::Monolith] {
        let mut stack = Stack::new(Options { shape, ..Options::default() });
        let author = stack.client_in_region("eu");
        signed_up(&mut stack, &author, "pager@example.com");
        let mut ids = Vec::new();
        for n in 0..7 {
            stack.advance(10.0);
            ids.push(author.publish_note(&mut stack, &format!("n{n}"), ""));
        }
        let private = author.create_note(&mut stack, "private", "");
        stack.replicate();
        stack.set_lag(stack.notes_db(), "eu", 30_000.0);
        let other = stack.client_of_another_isolate("eu");
        let before = walk_feed(&mut stack, &other, 2);
        assert_eq!(before.len(), 7);
        // The author's changes through the first isolate.
        assert_eq!(stack.send(author.delete(&format!("/api/notes/{}", ids[3])).send()).status(), 204);
        assert_eq!(stack.send(author.delete(&format!("/api/notes/{}/publication", ids[5])).send()).status(), 200);
        assert_eq!(stack.send(author.put(&format!("/api/notes/{private}/publication")).send()).status(), 200);
        // The author's browser, its requests now answered by the other isolate (the one whose
        // cache holds every page).
        let browser = other.clone();
        for name in [
            "__Host-edgestack_session",
            "__Host-edgestack_consistency",
            "__Host-edgestack_consistency_notes",
            "__Host-edgestack_identity",
        ] {
            if let Some(value) = author.cookie(name) {
                browser.set_cookie(name, &value);
            }
        }
        let seen = walk_feed(&mut stack, &browser, 2);
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{shape:?}: a note twice: {seen:?}");
        assert!(!seen.contains(&ids[3]), "{shape:?}: the deleted note");
        assert!(!seen.contains(&ids[5]), "{shape:?}: the unpublished note");
        assert!(seen.contains(&private), "{shape:?}: the newly published note");
        assert_eq!(seen.len(), 6, "{shape:?}: {seen:?}");
    }
}

/// Services: a second device (ap, far from the primaries) creates a published note while the
/// owner deletes the account in na; its create lands on the notes primary between the accounts
/// transaction and the delivery, or after it. Either way the note is gone from the database and
/// from every public read once the delivery is acknowledged and the replicas have it.
#[test]
fn a_note_published_while_the_account_is_being_deleted_does_not_survive_it() {
    for after in [0.0, 60.0, 120.0, 200.0] {
        let mut stack =
            Stack::new(Options { shape: Shape::Services, locations: vec!["na", "ap"], ..Options::default() });
        let owner = stack.client("na");
        signed_up(&mut stack, &owner, "leaving@example.com");
        let user_id = owner.user_id(&mut stack);
        let far = stack.client("ap");
        let sign_in = json!({"email": "leaving@example.com", "password": PASSWORD});
        assert_eq!(stack.send(far.post("/api/sessions").json(sign_in).send()).status(), 200);
        stack.replicate();
        let create = far.post("/api/notes").json(json!({"title": "racing", "published": true}));
        let deletion = owner.delete("/api/me").json(json!({"password": PASSWORD}));
        let (created, deleted) = stack.overlapping(create, after, deletion);
        assert_eq!(deleted.status(), 204, "{after}: {}", deleted.text());
        let id = (created.status() == 201).then(|| created.json()["note"]["id"].as_str().unwrap().to_string());
        stack.advance(2_000.0);
        stack.replicate();
        let left = stack.query_text("notes", &format!("SELECT id FROM notes WHERE owner_id = '{user_id}'"));
        assert!(left.is_empty(), "{after} ms: {} {left:?}", created.status());
        if let Some(id) = id {
            for reader in [stack.client("na"), stack.client("ap")] {
                let read = stack.send(reader.get(&format!("/api/public/notes/{id}")).send());
                assert_eq!(read.status(), 404, "{after} ms: {}", read.cache_status());
            }
        }
        assert_eq!(stack.send(far.post("/api/notes").json(json!({"title": "after"})).send()).status(), 401);
    }
}
