//! Account deletion across services (Level 5): `accounts` deletes the user and leaves an outbox
//! row in one transaction, tells `notes` at once, and the cron
//! (`edgestack_core::app::deliver_pending_deletions`) retries every row `notes` has not
//! acknowledged; a delivered row is removed, and the deleted user's identity is refused.

use edgestack_core::app::RECHECK_AFTER_MS;
use edgestack_core::services::Service;
use serde_json::json;

use crate::support::{Client, EndpointFault, PASSWORD, Stack, signed_up_user};

const IDENTITY_COOKIE: &str = "__Host-edgestack_identity";
const SESSION_COOKIE: &str = "__Host-edgestack_session";

fn outbox_rows(stack: &Stack, user_id: &str) -> Vec<Vec<Option<String>>> {
    let sql = format!(
        "SELECT CAST(attempts AS TEXT), CAST(last_attempt_at IS NOT NULL AS TEXT), last_error \
         FROM deletion_outbox WHERE user_id = '{user_id}'"
    );
    stack.query("accounts", &sql)
}

fn notes_of(stack: &Stack, user_id: &str) -> Vec<String> {
    stack.query_text("notes", &format!("SELECT id FROM notes WHERE owner_id = '{user_id}'"))
}

fn delete_account(stack: &mut Stack, client: &Client) -> crate::support::Response {
    stack.send(client.delete("/api/me").json(json!({"password": PASSWORD})).send())
}

#[test]
fn account_deletion_reaches_the_notes_service_after_it_recovers() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "orphan@example.com");
    let note = client.publish_note(&mut stack, "soon orphaned", "unless the outbox works");
    let user_id = client.user_id(&mut stack);
    let stale_identity = client.cookie(IDENTITY_COOKIE).unwrap();
    let stale_session = client.cookie(SESSION_COOKIE).unwrap();
    let reader = stack.client_in_region("eu");
    assert_eq!(stack.send(reader.get(&format!("/api/public/notes/{note}")).send()).status(), 200, "cached");

    stack.net.set_fault("notes", None, EndpointFault { down: true, ..EndpointFault::default() });
    let deleted = delete_account(&mut stack, &client);

    assert_eq!(deleted.status(), 204, "the account is deleted even while notes is down: {}", deleted.text());
    let sign_in = json!({"email": "orphan@example.com", "password": PASSWORD});
    assert_eq!(stack.send(stack.client("na").post("/api/sessions").json(sign_in.clone()).send()).status(), 401);
    let rows = outbox_rows(&stack, &user_id);
    assert_eq!(rows.len(), 1, "one outbox row waits");
    assert_eq!(rows[0][0].as_deref(), Some("1"), "tried once");
    assert!(rows[0][2].as_deref().is_some_and(|e| e.contains("notes answered 503")), "{rows:?}");

    // A cron run while notes is still down keeps the row and counts the attempt.
    assert_eq!(stack.run_deletion_cron(), (0, 1));
    assert_eq!(outbox_rows(&stack, &user_id)[0][0].as_deref(), Some("2"));
    assert_eq!(notes_of(&stack, &user_id), std::slice::from_ref(&note), "the notes outlive the account until delivery");
    let before_delivery = stack.send(reader.get(&format!("/api/public/notes/{note}")).send());
    assert_eq!(before_delivery.status(), 200, "readable until delivered (docs/services.md)");

    stack.net.set_fault("notes", None, EndpointFault::default());
    assert_eq!(stack.run_deletion_cron(), (1, 0));

    assert_eq!(
        stack.query_text("accounts", "SELECT id FROM deletion_outbox"),
        Vec::<String>::new(),
        "delivered and acknowledged"
    );
    assert_eq!(notes_of(&stack, &user_id), Vec::<String>::new());
    assert_eq!(stack.query_text("notes", "SELECT user_id FROM deleted_owners"), std::slice::from_ref(&user_id));
    let public_copy = stack.send(reader.get(&format!("/api/public/notes/{note}")).send());
    assert_eq!(public_copy.status(), 404, "the public copy is gone, cache included ({})", public_copy.cache_status());
    // The deleted user's identity is still within its lifetime, but notes refuses it now. A read
    // travels with it (a write would have its session checked by accounts first).
    let stale_cookies = format!("{SESSION_COOKIE}={stale_session}; {IDENTITY_COOKIE}={stale_identity}");
    let replay = stack.send(stack.client("na").get("/api/notes").header("cookie", &stale_cookies).send());
    assert_eq!(
        replay.timing("identity"),
        ["cookie", "none"],
        "the entry still accepts the unexpired identity; notes refuses it, and accounts knows no session"
    );
    assert_eq!(replay.status(), 401, "{}", replay.text());
    let write = stack.send(
        stack
            .client("na")
            .post("/api/notes")
            .header("cookie", &stale_cookies)
            .json(json!({"title": "from beyond"}))
            .send(),
    );
    assert_eq!((write.status(), write.timing("identity")), (401, vec!["none".to_string()]), "{}", write.text());
    assert_eq!(notes_of(&stack, &user_id), Vec::<String>::new());
    assert_eq!(stack.run_deletion_cron(), (0, 0), "nothing left to deliver");
}

#[test]
fn a_deletion_delivered_at_once_leaves_no_outbox_row() {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "prompt@example.com");
    client.create_note(&mut stack, "gone with the account", "");
    let user_id = client.user_id(&mut stack);

    let deleted = delete_account(&mut stack, &client);

    assert_eq!(deleted.status(), 204);
    assert_eq!(outbox_rows(&stack, &user_id), Vec::<Vec<Option<String>>>::new());
    assert_eq!(notes_of(&stack, &user_id), Vec::<String>::new());
    assert_eq!(stack.run_deletion_cron(), (0, 0));
}

fn check_failed_delivery(break_notes: impl Fn(&Stack), expected_error: &str) {
    let mut stack = Stack::services();
    let client = signed_up_user(&mut stack, "failing@example.com");
    client.create_note(&mut stack, "waiting", "");
    let user_id = client.user_id(&mut stack);
    break_notes(&stack);

    assert_eq!(delete_account(&mut stack, &client).status(), 204);
    stack.advance(1_000.0);
    assert_eq!(stack.run_deletion_cron(), (0, 1));

    let rows = outbox_rows(&stack, &user_id);
    assert_eq!(rows.len(), 1, "{expected_error}");
    assert_eq!(rows[0][0].as_deref(), Some("2"), "{expected_error}: {rows:?}");
    assert_eq!(rows[0][1].as_deref(), Some("1"), "{expected_error}: the attempt time is kept");
    let error = rows[0][2].clone().unwrap_or_default();
    assert!(error.contains(expected_error), "{error:?} should name {expected_error:?}");
    assert_eq!(notes_of(&stack, &user_id).len(), 1, "{expected_error}");
    assert_eq!(stack.logs_containing(&format!("deletion of user {user_id} not delivered yet")).len(), 1);
}

#[test]
fn every_kind_of_failed_delivery_keeps_the_row_with_its_attempts_and_error() {
    check_failed_delivery(
        |stack| stack.net.set_fault("notes", None, EndpointFault { down: true, ..EndpointFault::default() }),
        "notes answered 503",
    );
    check_failed_delivery(|stack| stack.service("notes").set_var("EDGESTACK_ENV", "staging"), "notes answered 500");
    check_failed_delivery(
        |stack| {
            stack.service("accounts").bindings.borrow_mut().remove("NOTES");
        },
        "no NOTES binding",
    );
    // A notes Worker that hangs is given up at the service deadline, by the deletion and by
    // the cron alike (neither would end otherwise).
    check_failed_delivery(
        |stack| stack.service("notes").set_var("EDGESTACK_INJECT_FAULT", "slow:600000"),
        "no answer within 20000 ms",
    );
}

#[test]
fn the_cron_delivers_every_pending_deletion_oldest_first_once_notes_is_back() {
    let mut stack = Stack::services();
    let mut users = Vec::new();
    stack.net.set_fault("notes", None, EndpointFault { down: true, ..EndpointFault::default() });
    for n in 0..3 {
        let client = signed_up_user(&mut stack, &format!("batch{n}@example.com"));
        let user_id = client.user_id(&mut stack);
        assert_eq!(delete_account(&mut stack, &client).status(), 204);
        users.push(user_id);
        stack.advance(1_000.0);
    }
    assert_eq!(stack.query_text("accounts", "SELECT user_id FROM deletion_outbox ORDER BY created_at"), users);

    stack.net.set_fault("notes", None, EndpointFault::default());
    let delivered = stack.run_deletion_cron();

    assert_eq!(delivered, (3, 0));
    assert_eq!(stack.query_text("accounts", "SELECT id FROM deletion_outbox"), Vec::<String>::new());
    let tombstones = stack.query_text("notes", "SELECT user_id FROM deleted_owners ORDER BY deleted_at");
    assert_eq!(tombstones, users, "delivered oldest first");
}

/// A cron run takes a hundred rows. Taken oldest first, a hundred rows `notes` keeps refusing
/// would be the whole of every run, and a deletion behind them never tried again: the least
/// recently tried go first.
#[test]
fn rows_that_keep_failing_do_not_hold_a_later_deletion_back() {
    let mut stack = Stack::services();
    stack.net.set_fault("notes", None, EndpointFault { down: true, ..EndpointFault::default() });
    // The hundred rows below were created in the first 100 ms, before this deletion.
    stack.advance(1_000.0);
    let client = signed_up_user(&mut stack, "behind@example.com");
    let user_id = client.user_id(&mut stack);
    assert_eq!(delete_account(&mut stack, &client).status(), 204);
    assert_eq!(outbox_rows(&stack, &user_id)[0][0].as_deref(), Some("1"), "its own delivery failed");
    // A hundred older rows, each tried again by a cron run after that deletion.
    stack.advance(60_000.0);
    let tried = stack.now_ms() as i64;
    stack.query(
        "accounts",
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO deletion_outbox (id, user_id, created_at, attempts, last_attempt_at, last_error) \
             SELECT 'stuck-' || i, 'gone-' || i, i, 9, {tried}, 'notes answered 500' FROM n"
        ),
    );
    stack.advance(60_000.0);

    assert_eq!(stack.run_deletion_cron(), (0, 100));

    assert_eq!(outbox_rows(&stack, &user_id)[0][0].as_deref(), Some("2"), "the later deletion was tried again");
    let untried = stack.query_text("accounts", "SELECT id FROM deletion_outbox WHERE attempts = 9");
    assert_eq!(untried.len(), 1, "one of the hundred waits for the next run");
}

#[test]
fn the_single_worker_deletes_an_account_and_its_notes_in_one_transaction() {
    let mut stack = Stack::monolith();
    let client = signed_up_user(&mut stack, "one@example.com");
    client.create_note(&mut stack, "mine", "");
    let user_id = client.user_id(&mut stack);
    let primary_before = stack.pipelines("main", None);

    let deleted = delete_account(&mut stack, &client);

    assert_eq!(deleted.status(), 204);
    assert_eq!(stack.pipelines("main", None) - primary_before, 2, "the password check, then one write");
    assert_eq!(notes_of_main(&stack, &user_id), Vec::<String>::new());
    let users = stack.query_text("main", &format!("SELECT id FROM users WHERE id = '{user_id}'"));
    assert_eq!(users, Vec::<String>::new(), "user and notes went in the same write");
}

fn notes_of_main(stack: &Stack, user_id: &str) -> Vec<String> {
    stack.query_text("main", &format!("SELECT id FROM notes WHERE owner_id = '{user_id}'"))
}

/// The author of a published note deletes the account while the replicas lag: the author's
/// next reads of the public note and the feed no longer show it (docs/edge-data-path.md, "the
/// change, at once" for its author), in the services shape too, where the notes go through the
/// outbox: `accounts` passes on the notes service's read-your-writes cookie of the deletion.
#[test]
fn the_author_no_longer_reads_the_notes_of_the_account_just_deleted() {
    crate::support::each_shape(|mut stack| {
        let author = stack.client_in_region("eu");
        crate::support::signed_up(&mut stack, &author, "author@example.com");
        let created = stack.send(author.post("/api/notes").json(json!({"title": "pub", "published": true})).send());
        let id = created.json()["note"]["id"].as_str().unwrap().to_string();
        let path = format!("/api/public/notes/{id}");
        stack.advance(1_000.0);
        assert_eq!(stack.send(author.get(&path).send()).status(), 200);
        stack.replicate();
        for database in [stack.notes_db(), stack.accounts_db()] {
            stack.set_lag(database, "eu", 3_000.0);
        }

        assert_eq!(delete_account(&mut stack, &author).status(), 204);
        stack.advance(50.0);

        let note = stack.send(author.get(&path).send());
        assert_eq!(note.status(), 404, "{:?}: {:?}", stack.options.shape, note.db_targets());
        let feed = stack.send(author.get("/api/public/notes").send()).json();
        let listed = feed["notes"].as_array().unwrap().iter().any(|note| note["id"] == id.as_str());
        assert!(!listed, "{:?}: the feed still lists the deleted account's note", stack.options.shape);
    });
}

/// `notes` took the deletion, then `accounts` lost its primary before it could remove the
/// outbox row: the author still gets the notes service's read-your-writes cookie (the notes
/// are gone whatever happens to the row), and the row waits for the cron, whose second,
/// idempotent delivery removes it.
#[test]
fn a_row_left_after_notes_acknowledged_still_hands_the_author_the_deletion() {
    let mut stack = Stack::services();
    let author = stack.client_in_region("eu");
    crate::support::signed_up(&mut stack, &author, "kept@example.com");
    let note = author.publish_note(&mut stack, "pub", "");
    let user_id = author.user_id(&mut stack);
    let path = format!("/api/public/notes/{note}");
    stack.advance(1_000.0);
    assert_eq!(stack.send(author.get(&path).send()).status(), 200);
    stack.replicate();
    stack.set_lag("notes", "eu", 3_000.0);

    let deletion = stack.rt.spawn(author.delete("/api/me").json(json!({"password": PASSWORD})).send());
    for _ in 0..10_000 {
        if notes_of(&stack, &user_id).is_empty() {
            break;
        }
        stack.advance(1.0);
    }
    assert_eq!(notes_of(&stack, &user_id), Vec::<String>::new(), "notes took the deletion");
    stack.net.set_fault("accounts", None, EndpointFault { down: true, ..EndpointFault::default() });
    let deleted = stack.rt.wait(deletion);

    assert_eq!(deleted.status(), 204, "{}", deleted.text());
    let notes_cookie = format!("{}=", Service::Notes.consistency_cookie());
    let handed = deleted.headers_named("set-cookie").iter().any(|cookie| cookie.starts_with(&notes_cookie));
    assert!(handed, "{:?}", deleted.headers_named("set-cookie"));
    assert_eq!(outbox_rows(&stack, &user_id).len(), 1, "the row waits for the cron");
    assert_eq!(stack.logs_containing("delivered, its row is left for the cron").len(), 1);
    stack.advance(50.0);
    let read = stack.send(author.get(&path).send());
    assert_eq!(read.status(), 404, "{:?}", read.db_targets());

    stack.net.set_fault("accounts", None, EndpointFault::default());
    assert_eq!(stack.run_deletion_cron(), (1, 0));
    assert_eq!(outbox_rows(&stack, &user_id), Vec::<Vec<Option<String>>>::new());
}

/// A review found a deletion whose first delivery committed on the notes primary but answered
/// too late (503 to `accounts`): the cron's redelivery deleted nothing, so it raised no floor,
/// and the owner's public note and the feed stayed cached (`hit-kv`) for KV's 60 s after
/// `notes` acknowledged. Every delivery now invalidates what was public when the first ran.
#[test]
fn a_redelivered_deletion_invalidates_the_public_copies_the_first_one_deleted() {
    let mut stack = Stack::services();
    let owner = signed_up_user(&mut stack, "lost-answer@example.com");
    let note = owner.publish_note(&mut stack, "public", "soon deleted");
    let reader = stack.client_in_region("eu");
    let path = format!("/api/public/notes/{note}");
    assert_eq!(stack.send(reader.get(&path).send()).status(), 200);
    assert!(stack.send(reader.get("/api/public/notes").send()).text().contains(&note));

    // The notes primary runs the deletion, but its answer comes after the 5 s deadline.
    stack.net.set_fault("notes", None, EndpointFault { extra_latency_ms: 3_000.0, ..EndpointFault::default() });
    let deleted = stack.send(owner.delete("/api/me").json(json!({"password": PASSWORD})).send());
    assert_eq!(deleted.status(), 204, "{}", deleted.text());
    assert_eq!(stack.query_text("notes", "SELECT count(*) FROM notes"), ["0"], "committed on the primary");
    stack.net.set_fault("notes", None, EndpointFault::default());
    assert_eq!(stack.run_deletion_cron(), (1, 0), "notes acknowledged the redelivery");
    stack.replicate();

    let read = stack.send(reader.get(&path).send());
    assert_eq!(read.status(), 404, "{} ({})", read.text(), read.cache_status());
    let feed = stack.send(reader.get("/api/public/notes").send());
    assert!(!feed.text().contains(&note), "the feed still lists it ({})", feed.cache_status());
}

/// docs/services.md's read bound for a deleted account's other devices: refused once their
/// notes replica has applied the deletion (within its lag they may still read, as a review
/// showed; the docs had said "at once").
#[test]
fn a_deleted_accounts_other_device_is_refused_once_its_notes_replica_has_the_deletion() {
    let mut stack = Stack::services();
    let owner = signed_up_user(&mut stack, "gone@example.com");
    owner.create_note(&mut stack, "private", "secret");
    let other = stack.client_in_region("eu");
    let sign_in = json!({"email": "gone@example.com", "password": PASSWORD});
    assert_eq!(stack.send(other.post("/api/sessions").json(sign_in).send()).status(), 200);
    assert_eq!(stack.send(other.get("/api/notes").send()).status(), 200);
    stack.replicate();
    stack.set_lag("notes", "eu", 500.0);
    let deleted = stack.send(owner.delete("/api/me").json(json!({"password": PASSWORD})).send());
    assert_eq!(deleted.status(), 204, "{}", deleted.text());
    stack.advance(600.0);
    stack.replicate();
    let after = stack.send(other.get("/api/notes").send());
    assert_eq!(after.status(), 401, "{}", after.text());
    let write = stack.send(other.post("/api/notes").json(json!({"title": "t", "body": "b"})).send());
    assert_eq!(write.status(), 401, "{}", write.text());
}

/// While the deletion's delivery fails there is no tombstone: another device's write passes the
/// entry's session check on an accounts replica that has not applied the deletion, and its note
/// is written. The redelivery deletes it with the rest, and the tombstone refuses what follows
/// (docs/services.md, revocation bound).
#[test]
fn a_note_written_while_the_deletion_could_not_be_delivered_goes_at_the_redelivery() {
    let mut stack = Stack::services();
    let owner = signed_up_user(&mut stack, "late@example.com");
    let user_id = owner.user_id(&mut stack);
    let other = stack.client_in_region("eu");
    let sign_in = json!({"email": "late@example.com", "password": PASSWORD});
    assert_eq!(stack.send(other.post("/api/sessions").json(sign_in).send()).status(), 200);
    stack.replicate();
    stack.set_lag("accounts", "eu", 5_000.0);
    stack.net.set_fault("notes", None, EndpointFault { down: true, ..EndpointFault::default() });
    assert_eq!(delete_account(&mut stack, &owner).status(), 204);
    stack.net.set_fault("notes", None, EndpointFault::default());

    let written = stack.send(other.post("/api/notes").json(json!({"title": "in between"})).send());
    assert_eq!(written.status(), 201, "the eu accounts replica has not applied the deletion: {}", written.text());
    assert_eq!(notes_of(&stack, &user_id).len(), 1);
    assert_eq!(stack.run_deletion_cron(), (1, 0));
    assert_eq!(notes_of(&stack, &user_id), Vec::<String>::new(), "gone with the rest");
    let refused = stack.send(other.post("/api/notes").json(json!({"title": "after"})).send());
    assert_eq!(refused.status(), 401, "the tombstone: {}", refused.text());
    assert_eq!(notes_of(&stack, &user_id), Vec::<String>::new());
}

/// Found in review: `notes` acknowledged a deletion on its primary while the replicas lagged,
/// the primary died and a replica was promoted without it (docs/failover.md: acknowledged writes
/// can be lost at a failover). The outbox row was gone, so nothing delivered the deletion again:
/// the deleted account's public note was served to anyone by the new primary, for good. Every
/// acknowledged deletion is now delivered once more after the replica lag the stack is sized
/// for, and that delivery is retried until `notes` — whichever node is primary then — takes it.
#[test]
fn a_deletion_a_notes_failover_lost_is_delivered_again() {
    let mut stack = Stack::services();
    let owner = signed_up_user(&mut stack, "erased@example.com");
    let note = owner.publish_note(&mut stack, "personal", "data");
    let user_id = owner.user_id(&mut stack);
    stack.replicate();
    stack.set_lag("notes", "eu", 60_000.0);
    stack.set_lag("notes", "ap", 60_000.0);
    assert_eq!(delete_account(&mut stack, &owner).status(), 204);
    assert_eq!(outbox_rows(&stack, &user_id), Vec::<Vec<Option<String>>>::new(), "acknowledged");

    crate::failover::kill_primary(&stack, "notes");
    crate::failover::promote_and_publish(&mut stack, "notes", "eu");
    let reader = stack.client("na");
    let path = format!("/api/public/notes/{note}");
    assert_eq!(stack.send(reader.get(&path).send()).status(), 200, "the promoted replica never had the deletion");
    assert_eq!(stack.run_deletion_cron(), (0, 0), "the outbox itself is empty");

    stack.advance(RECHECK_AFTER_MS as f64);
    let report = stack.run_deletion_cron_report();

    assert_eq!((report.rechecked, report.recheck_failed), (1, 0), "{report:?}");
    assert_eq!(stack.query_text("accounts", "SELECT id FROM deletion_rechecks"), Vec::<String>::new());

    let on_the_new_primary = |sql: &str| crate::failover::rows_on(&stack, "notes", "eu", sql);
    let left = on_the_new_primary(&format!("SELECT id FROM notes WHERE owner_id = '{user_id}'"));
    assert_eq!(left, Vec::<String>::new(), "deleted on the new primary");
    assert_eq!(on_the_new_primary("SELECT user_id FROM deleted_owners"), std::slice::from_ref(&user_id));
    let read = stack.send(reader.get(&path).send());
    assert_eq!(read.status(), 404, "{} ({})", read.text(), read.cache_status());
}

/// The recheck is retried, like the first delivery, until `notes` takes it; before it is due
/// the cron leaves it alone.
#[test]
fn a_recheck_notes_does_not_take_is_tried_again_on_a_later_run() {
    let mut stack = Stack::services();
    let owner = signed_up_user(&mut stack, "recheck@example.com");
    owner.create_note(&mut stack, "gone", "");
    assert_eq!(delete_account(&mut stack, &owner).status(), 204);
    let report = stack.run_deletion_cron_report();
    assert_eq!((report.rechecked, report.recheck_failed), (0, 0), "not due yet");
    assert_eq!(stack.query_text("accounts", "SELECT count(*) FROM deletion_rechecks"), ["1"]);

    stack.advance(RECHECK_AFTER_MS as f64);
    stack.net.set_fault("notes", None, EndpointFault { down: true, ..EndpointFault::default() });
    let report = stack.run_deletion_cron_report();
    assert_eq!((report.rechecked, report.recheck_failed), (0, 1), "{report:?}");
    assert_eq!(stack.query_text("accounts", "SELECT count(*) FROM deletion_rechecks"), ["1"], "kept");

    stack.net.set_fault("notes", None, EndpointFault::default());
    let report = stack.run_deletion_cron_report();
    assert_eq!((report.rechecked, report.recheck_failed), (1, 0), "{report:?}");
    assert_eq!(stack.query_text("accounts", "SELECT count(*) FROM deletion_rechecks"), ["0"]);
}

/// A notes Worker that gives no answer costs a cron run one deadline, not one per row: each of
/// the others would wait the same 20 s (a hundred rows: over half an hour, with a new run every
/// minute taking the same rows), so they wait for the next run; the rechecks too. Nothing is
/// counted against the rows not tried.
#[test]
fn a_notes_worker_that_gives_no_answer_costs_a_cron_run_one_deadline() {
    let mut stack = Stack::services();
    stack.net.set_fault("notes", None, EndpointFault { down: true, ..EndpointFault::default() });
    for n in 0..3 {
        let client = signed_up_user(&mut stack, &format!("waiting{n}@example.com"));
        assert_eq!(delete_account(&mut stack, &client).status(), 204);
        stack.advance(1_000.0);
    }
    stack.net.set_fault("notes", None, EndpointFault::default());
    stack.service("notes").set_var("EDGESTACK_INJECT_FAULT", "slow:600000");

    let started = stack.now_ms();
    let report = stack.run_deletion_cron_report();

    assert_eq!((report.delivered, report.failed, report.deferred), (0, 1, 2), "{report:?}");
    let took = stack.now_ms() - started;
    assert!(took < 25_000.0, "one service deadline (20 s), not one per row: {took} ms");
    let attempts = stack.query_text("accounts", "SELECT CAST(attempts AS TEXT) FROM deletion_outbox ORDER BY attempts");
    assert_eq!(attempts, ["1", "1", "2"]);
    assert_eq!(stack.logs_containing("2 deletions wait for the next run").len(), 1);
}
