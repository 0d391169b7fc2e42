//! Failover in-process (issue #13, docs/failover.md): a replica promoted in the simulated
//! cluster (`devdb::sim`, which fences the old primary as devdb does), the primary record
//! written to KV as an operator would, and the Worker finding the new primary through it —
//! which operations it sends again and which it does not, what a read-your-writes token from
//! before the failover asks for, and a replica still on the old term. Beside them, issue #17's
//! token binding: a token is worth nothing for another database, a token ahead of the primary
//! is believed only up to it, and an identity names its type and audience.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use edgestack_core::datapath::ConsistencyToken;
use edgestack_core::datapath::primary::{RECHECK_INTERVAL_MS, record_key};
use serde_json::{Value, json};

use crate::support::{Client, EndpointFault, Options, Shape, Stack, each_shape, signed_up_user};

/// The simulated Workers' `CONSISTENCY_KEY` (`support::Stack::new`).
const SIM_CONSISTENCY_KEY: &[u8] = b"sim-consistency-key";

fn cookie_name(stack: &Stack) -> &'static str {
    match stack.options.shape {
        Shape::Monolith => "__Host-edgestack_consistency",
        Shape::Services => "__Host-edgestack_consistency_notes",
    }
}

/// The primary of `database` stops answering (connection refused), as when its process dies.
pub(crate) fn kill_primary(stack: &Stack, database: &str) {
    stack.net.set_fault(database, None, EndpointFault { down: true, ..EndpointFault::default() });
}

/// `devdb promote` on replica `region` of `database`, then the operator's `wrangler kv key put`
/// of the primary record, written in location `na` (where the test's Workers run).
pub(crate) fn promote_and_publish(stack: &mut Stack, database: &str, region: &str) -> u64 {
    let now = stack.now_ms();
    let term = stack.net.cluster(database, |cluster| cluster.promote(region, now)).unwrap();
    let (_, terms) = stack.net.cluster(database, |cluster| cluster.history());
    let terms: Vec<Value> =
        terms.iter().map(|start| json!({"term": start.term, "from_index": start.from_index.to_string()})).collect();
    let record = json!({"url": format!("http://{database}-{region}.sim"), "term": term, "terms": terms});
    let now = stack.now_ms();
    stack.kv.borrow_mut().put("na", &record_key(database), record.to_string().into_bytes(), 86_400, now).unwrap();
    term
}

/// The first column of `sql`'s rows on node `node` of `database` (a replica's region, or the
/// one promoted), read from the cluster itself.
pub(crate) fn rows_on(stack: &Stack, database: &str, node: &str, sql: &str) -> Vec<String> {
    let body = json!({"requests": [{"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]});
    let body = serde_json::to_vec(&body).unwrap();
    let now = stack.now_ms();
    let answer = stack.net.cluster(database, |cluster| cluster.pipeline(Some(node), &body, now)).unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let rows = answer["results"][0]["response"]["result"]["rows"].as_array().cloned().unwrap_or_default();
    rows.iter().map(|row| row[0]["value"].as_str().unwrap_or("NULL").to_string()).collect()
}

fn note_titles(stack: &Stack, database: &str, node: &str) -> Vec<String> {
    rows_on(stack, database, node, "SELECT title FROM notes ORDER BY title")
}

/// `(term, index)` of a read-your-writes cookie (`2.<term>.<index>.<mac>`).
fn token_of(value: &str) -> (u64, u64) {
    let parts: Vec<&str> = value.split('.').collect();
    assert_eq!((parts.len(), parts[0]), (4, "2"), "not a v2 token: {value}");
    (parts[1].parse().unwrap(), parts[2].parse().unwrap())
}

fn titles(response: &crate::support::Response) -> Vec<String> {
    let mut titles: Vec<String> = response.json()["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|note| note["title"].as_str().unwrap().into())
        .collect();
    titles.sort();
    titles
}

#[test]
fn the_worker_finds_the_promoted_primary_through_the_record_without_a_redeploy() {
    each_shape(|mut stack| {
        let database = stack.notes_db();
        let user = signed_up_user(&mut stack, "switch@example.com");
        let before = user.create_note(&mut stack, "before", "");
        stack.replicate();
        kill_primary(&stack, database);

        // Until a replica is promoted and the record says so: writes 503, reads go on.
        let refused = stack.send(user.post("/api/notes").json(json!({"title": "refused"})).send());
        assert_eq!((refused.status(), refused.error_code().as_str()), (503, "database_unavailable"));
        let read = stack.send(user.in_region("eu").get(&format!("/api/notes/{before}")).send());
        assert_eq!((read.status(), read.db_targets()), (200, vec!["replica-eu".to_string()]), "{}", read.text());
        // From na the primary is the nearest copy; when it fails, the farther replicas answer.
        let from_na = stack.send(user.get(&format!("/api/notes/{before}")).send());
        assert_eq!(from_na.status(), 200, "{}", from_na.text());
        assert_eq!(from_na.db_targets(), ["primary", "replica-eu"]);
        assert_eq!(from_na.timing("fallback"), ["primary failed"]);
        assert_eq!(promote_and_publish(&mut stack, database, "eu"), 2);
        stack.advance(RECHECK_INTERVAL_MS);

        // The first write after the record still meets the dead primary; the isolate reads the
        // record then, but does not send this write on: a lost connection may follow a commit.
        let unknown = stack.send(user.post("/api/notes").json(json!({"title": "unknown"})).send());
        assert_eq!(unknown.status(), 503, "{}", unknown.text());
        assert_eq!(stack.logs_containing("it is not sent to http://").len(), 1);
        // From then on the isolate writes to the new primary, in one round trip.
        let after = stack.send(user.post("/api/notes").json(json!({"title": "after"})).send());
        assert_eq!(after.status(), 201, "{}", after.text());
        assert_eq!(after.db_targets(), ["primary"]);
        assert_eq!(note_titles(&stack, database, "eu"), ["after", "before"], "the refused writes ran nowhere");
        let (term, index) = token_of(&user.cookie(cookie_name(&stack)).unwrap());
        assert_eq!((term, index), (2, stack.replication_index(database, Some("eu"))), "the token names term 2");
        assert_eq!(stack.logs_containing(&format!("is now http://{database}-eu.sim (term 2)")).len(), 1);
    });
}

#[test]
fn a_write_the_fenced_old_primary_refused_is_sent_once_to_the_new_primary() {
    let mut stack = Stack::monolith();
    let user = signed_up_user(&mut stack, "fenced@example.com");
    stack.replicate();
    // The old primary keeps running: the promotion fences it (503 PRIMARY_FENCED, nothing ran).
    promote_and_publish(&mut stack, "main", "ap");

    let created = stack.send(user.post("/api/notes").json(json!({"title": "once"})).send());

    assert_eq!(created.status(), 201, "{}", created.text());
    assert_eq!(created.db_targets(), ["primary", "primary"]);
    assert_eq!(created.timing("fallback"), ["primary failed"]);
    assert_eq!(note_titles(&stack, "main", "ap"), ["once"], "exactly once");
    let next = stack.send(user.post("/api/notes").json(json!({"title": "next"})).send());
    assert_eq!((next.status(), next.db_targets()), (201, vec!["primary".to_string()]));
}

#[test]
fn a_read_that_needs_the_primary_is_read_from_the_new_one_and_public_reads_never_fail() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "reader@example.com");
    let public = author.publish_note(&mut stack, "public", "");
    stack.replicate();
    stack.set_lag("main", "eu", 60_000.0);
    let fresh = author.create_note(&mut stack, "fresh", "");
    let author = author.in_region("eu");
    let anonymous = stack.client_in_region("eu");
    kill_primary(&stack, "main");
    // Everyone else reads the replica; nobody notices the primary is gone.
    let feed = stack.send(anonymous.get(&format!("/api/public/notes/{public}")).send());
    assert_eq!(feed.status(), 200);

    promote_and_publish(&mut stack, "main", "ap");
    let own = stack.send(author.get(&format!("/api/notes/{fresh}")).send());

    assert_eq!(own.status(), 200, "{}", own.text());
    assert_eq!(own.db_targets(), ["replica-eu", "primary", "primary"]);
    assert_eq!(own.timing("fallback"), ["replica-eu behind", "primary failed"]);
    for _ in 0..20 {
        stack.advance(250.0);
        let read = stack.send(anonymous.get(&format!("/api/public/notes/{public}")).send());
        assert_eq!(read.status(), 200, "{}", read.text());
    }
}

/// While the primary is down and no record names another, a read that needs the client's
/// last write waits for a replica that has pulled it to apply it; one that no replica will
/// ever have is refused once the primary's deadline has passed again — never answered without
/// the client's write.
#[test]
fn with_the_primary_down_a_read_waits_for_its_write_to_reach_a_replica() {
    let mut stack = Stack::monolith();
    let user = signed_up_user(&mut stack, "waits@example.com").in_region("eu");
    stack.replicate();
    stack.set_lag("main", "eu", 1_000.0);
    stack.set_lag("main", "ap", 1_000.0);
    let arriving = user.create_note(&mut stack, "arriving", "");
    kill_primary(&stack, "main");

    let started = stack.now_ms();
    let read = stack.send(user.get(&format!("/api/notes/{arriving}")).send());
    let waited = stack.now_ms() - started;

    assert_eq!(read.status(), 200, "{}", read.text());
    assert!((800.0..1_600.0).contains(&waited), "answered once a replica applied the write: {waited} ms");
    assert_eq!(read.timing("fallback")[..3], ["replica-eu behind", "primary failed", "replica-ap behind"]);

    stack.set_lag("main", "eu", 60_000.0);
    stack.set_lag("main", "ap", 60_000.0);
    stack.net.set_fault("main", None, EndpointFault::default());
    let never = user.create_note(&mut stack, "never replicated", "");
    kill_primary(&stack, "main");
    let started = stack.now_ms();
    let refused = stack.send(user.get(&format!("/api/notes/{never}")).send());
    let waited = stack.now_ms() - started;
    assert_eq!((refused.status(), refused.error_code().as_str()), (503, "database_unavailable"));
    assert!((5_000.0..5_600.0).contains(&waited), "refused after the primary's deadline: {waited} ms");
}

/// A client wrote its last note just before the primary died, and the promoted replica never
/// had it. Its token asks for more than the new history holds; the new primary's answer caps
/// it, and the client sees what survived — its lost note missing — at once, with its cookie
/// corrected: the request neither waits nor fails.
fn read_after_losing_the_last_write(stack: &mut Stack, token_term: Option<u64>) {
    let database = stack.notes_db();
    let user = signed_up_user(stack, "before@example.com");
    user.create_note(stack, "kept", "");
    stack.replicate();
    stack.set_lag(database, "eu", 60_000.0);
    stack.set_lag(database, "ap", 60_000.0);
    user.create_note(stack, "lost", "");
    let (term, index) = token_of(&user.cookie(cookie_name(stack)).unwrap());
    assert_eq!(term, 1, "the primary reports its term (x-devdb-term)");
    if let Some(term) = token_term {
        let token = ConsistencyToken { term, replication_index: index };
        user.set_cookie(cookie_name(stack), &token.encode(SIM_CONSISTENCY_KEY, database).unwrap());
    }
    kill_primary(stack, database);
    promote_and_publish(stack, database, "eu");
    let promoted_at = stack.replication_index(database, Some("eu"));
    assert!(promoted_at < index, "the promoted replica lacks the last write");

    let list = stack.send(user.get("/api/notes").send());

    assert_eq!(list.status(), 200, "{}", list.text());
    assert_eq!(titles(&list), ["kept"]);
    assert_eq!(token_of(&user.cookie(cookie_name(stack)).unwrap()).1, promoted_at, "believed up to the new primary");
    assert_eq!(stack.logs_containing("is ahead of the primary").len(), 1);
    let again = stack.send(user.get("/api/notes").send());
    assert_eq!((again.status(), again.db_requests()), (200, 1), "nothing waits for the lost index");
}

#[test]
fn a_token_from_before_the_failover_asks_only_for_what_survived() {
    each_shape(|mut stack| read_after_losing_the_last_write(&mut stack, None));
}

/// The same with a token of unknown term (0), as a worker mints it when neither a record nor
/// the answering node named the term.
#[test]
fn a_token_of_unknown_term_from_before_the_failover_is_capped_alike() {
    each_shape(|mut stack| read_after_losing_the_last_write(&mut stack, Some(0)));
}

/// A public read whose answer corrects the client's token carries that client's cookie. RFC 9111
/// §7.3: `Set-Cookie` does not keep a response out of a shared cache; stored under `public`, it
/// was handed to everyone the cache served next, rewinding the token of a reader who had just
/// written. Such an answer is for its own client only (`private`), and still revalidates.
#[test]
fn a_public_read_that_sets_a_cookie_is_not_for_shared_caches() {
    each_shape(|mut stack| {
        let database = stack.notes_db();
        let user = signed_up_user(&mut stack, "shared@example.com");
        user.publish_note(&mut stack, "kept", "");
        stack.replicate();
        stack.set_lag(database, "eu", 60_000.0);
        stack.set_lag(database, "ap", 60_000.0);
        user.create_note(&mut stack, "lost", "");
        kill_primary(&stack, database);
        promote_and_publish(&mut stack, database, "eu");

        let feed = stack.send(user.get("/api/public/notes").send());

        assert_eq!(feed.status(), 200, "{}", feed.text());
        assert_eq!(feed.headers_named("set-cookie").len(), 1, "the corrected token");
        let cache_control = feed.header("cache-control").unwrap_or_default();
        assert_eq!(cache_control, "private, max-age=0, must-revalidate", "a cookie is one client's");
        assert!(feed.header("etag").is_some(), "still revalidated");
        let anyone = stack.send(stack.client("na").get("/api/public/notes").send());
        assert_eq!(anyone.header("cache-control"), Some("public, max-age=0, must-revalidate"));
        assert!(anyone.headers_named("set-cookie").is_empty());
    });
}

/// A token of a known term whose index is past where the history moved on: it asks only for
/// its term's end, so a replica of the new history answers at once.
#[test]
fn a_token_of_an_older_term_asks_only_for_what_its_term_kept() {
    let mut stack = Stack::monolith();
    let user = signed_up_user(&mut stack, "older@example.com");
    user.create_note(&mut stack, "first", "");
    stack.replicate();
    // Failover 1 (nothing lost): the isolate learns term 2 and mints term-2 tokens from then on.
    promote_and_publish(&mut stack, "main", "eu");
    stack.advance(2_000.0);
    user.create_note(&mut stack, "second", "");
    stack.replicate();
    stack.set_lag("main", "ap", 60_000.0);
    user.create_note(&mut stack, "lost", "");
    let (term, index) = token_of(&user.cookie("__Host-edgestack_consistency").unwrap());
    assert_eq!(term, 2);
    // Failover 2, to ap, which never applied "lost": term 3 begins below the token.
    stack.net.set_fault("main", Some("eu"), EndpointFault { down: true, ..EndpointFault::default() });
    assert_eq!(promote_and_publish(&mut stack, "main", "ap"), 3);
    stack.advance(RECHECK_INTERVAL_MS);
    let end_of_term_2 = stack.replication_index("main", Some("ap"));
    assert!(end_of_term_2 < index);
    // The isolate meets the dead primary once (a write, not sent on), and so reads the record.
    let unknown = stack.send(user.post("/api/notes").json(json!({"title": "unknown"})).send());
    assert_eq!(unknown.status(), 503);

    let list = stack.send(user.in_region("ap").get("/api/notes").send());

    assert_eq!(list.status(), 200, "{}", list.text());
    assert_eq!(titles(&list), ["first", "second"]);
    assert_eq!(list.db_targets(), ["primary"], "ap is the primary now, and nothing waits for the lost index");
    // Corrected to where term 2 ended, under the term the isolate knows: never older than the
    // client's (`a_corrected_cookie_never_names_a_term_older_than_the_clients`).
    assert_eq!(token_of(&user.cookie("__Host-edgestack_consistency").unwrap()), (3, end_of_term_2));
    assert_eq!(stack.logs_containing("past the end of that term").len(), 1);
}

/// The replica ap applied entries of term 1 the new primary never had. For about a second it
/// still serves them under term 1 with an index at or above the client's term-2 write — which
/// an index alone would take for that write. Its term says otherwise.
#[test]
fn a_replica_still_on_the_old_term_is_not_taken_for_the_new_history() {
    let mut stack = Stack::monolith();
    let user = signed_up_user(&mut stack, "terms@example.com").in_region("ap");
    stack.replicate();
    stack.set_lag("main", "eu", 60_000.0);
    for n in 0..3 {
        user.create_note(&mut stack, &format!("lost {n}"), "");
    }
    kill_primary(&stack, "main");
    promote_and_publish(&mut stack, "main", "eu");
    let unknown = stack.send(user.post("/api/notes").json(json!({"title": "unknown"})).send());
    assert_eq!(unknown.status(), 503, "the isolate reads the record on this failure");
    let mine = user.create_note(&mut stack, "mine", "");
    let (term, index) = token_of(&user.cookie("__Host-edgestack_consistency").unwrap());
    assert_eq!(term, 2);
    assert!(stack.replication_index("main", Some("ap")) >= index, "ap's index alone would pass");
    assert!(!note_titles(&stack, "main", "ap").contains(&"mine".to_string()), "but ap lacks the write");

    let read = stack.send(user.get(&format!("/api/notes/{mine}")).send());

    assert_eq!(read.status(), 200, "{}", read.text());
    assert_eq!(read.db_targets(), ["replica-ap", "primary"]);
    assert_eq!(read.timing("fallback"), ["replica-ap behind"]);
}

/// Issue #17: in the services shape the accounts database's cookie, replayed as the notes
/// cookie, sent every anonymous feed read past both caches to the notes primary.
#[test]
fn a_read_your_writes_cookie_is_worth_nothing_for_another_database() {
    let mut stack = Stack::services();
    let author = signed_up_user(&mut stack, "author@example.com");
    author.publish_note(&mut stack, "public", "");
    for n in 0..5 {
        signed_up_user(&mut stack, &format!("pusher{n}@example.com"));
    }
    let accounts_token = author.cookie("__Host-edgestack_consistency_accounts").unwrap();
    let (_, accounts_index) = token_of(&accounts_token);
    assert!(accounts_index > stack.replication_index("notes", None), "it would have skipped every cached entry");
    stack.replicate();
    let anonymous = stack.client("na");
    assert_eq!(stack.send(anonymous.get("/api/public/notes").send()).status(), 200);

    let replayed = stack.client("na");
    replayed.set_cookie("__Host-edgestack_consistency_notes", &accounts_token);
    let feed = stack.send(replayed.get("/api/public/notes").send());

    assert_eq!(feed.status(), 200, "{}", feed.text());
    assert_eq!((feed.cache_status().as_str(), feed.db_requests()), ("hit-memory", 0), "the cookie was ignored");
    assert!(feed.header("set-cookie").is_none());
}

/// A validly signed token far ahead of the primary (as after a restore) costs one trip to the
/// primary; its answer caps the token and corrects the cookie, and the next read is local.
#[test]
fn a_token_ahead_of_the_primary_is_believed_only_up_to_it() {
    each_shape(|mut stack| {
        let database = stack.notes_db();
        let user = signed_up_user(&mut stack, "ahead@example.com").in_region("eu");
        user.create_note(&mut stack, "mine", "");
        stack.replicate();
        let primary_index = stack.replication_index(database, None);
        let ahead = ConsistencyToken { term: 0, replication_index: primary_index + 1_000 };
        user.set_cookie(cookie_name(&stack), &ahead.encode(SIM_CONSISTENCY_KEY, database).unwrap());

        let capped = stack.send(user.get("/api/notes").send());

        assert_eq!(capped.status(), 200, "{}", capped.text());
        assert_eq!(capped.db_targets(), ["replica-eu", "primary"]);
        let (_, corrected) = token_of(&user.cookie(cookie_name(&stack)).unwrap());
        assert_eq!(corrected, primary_index);
        let next = stack.send(user.get("/api/notes").send());
        assert_eq!(next.db_targets(), ["replica-eu"], "the corrected token is met by the replica");
        assert!(next.header("set-cookie").is_none() || !next.header("set-cookie").unwrap().contains("consistency"));
    });
}

/// The identity payload `accounts` signs (seed `[7; 32]` in the simulated stack), with `extra`
/// claims.
fn identity_signed_by_accounts(user_id: &str, session_hash: &str, now_ms: i64, extra: Value) -> String {
    let mut claims = json!({"v": 1, "sub": user_id, "sid": session_hash, "iat": now_ms, "exp": now_ms + 30_000});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = SigningKey::from_bytes(&[7; 32]).sign(payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn session_hash(client: &Client) -> String {
    let token = client.cookie("__Host-edgestack_session").unwrap();
    edgestack_core::accounts::session::SessionToken::parse(&token).unwrap().hash()
}

#[test]
fn an_identity_for_another_audience_or_of_another_type_is_refused() {
    let mut stack = Stack::new(Options { shape: Shape::Services, ..Options::default() });
    let user = signed_up_user(&mut stack, "identity@example.com");
    let note = user.create_note(&mut stack, "mine", "");
    let user_id = user.user_id(&mut stack);
    let now = stack.now_ms() as i64;
    let hash = session_hash(&user);
    let notes = stack.client_of(stack.service("notes"));
    notes.set_cookie("__Host-edgestack_session", &user.cookie("__Host-edgestack_session").unwrap());
    let path = format!("/api/notes/{note}");
    let with_identity = |stack: &mut Stack, identity: &str| {
        stack.send(notes.get(&path).header("x-edgestack-identity", identity).header("x-edgestack-region", "na").send())
    };

    let bound = identity_signed_by_accounts(&user_id, &hash, now, json!({"typ": "edgestack-identity", "aud": "notes"}));
    let other_audience =
        identity_signed_by_accounts(&user_id, &hash, now, json!({"typ": "edgestack-identity", "aud": "accounts"}));
    let other_type =
        identity_signed_by_accounts(&user_id, &hash, now, json!({"typ": "edgestack-device", "aud": "notes"}));

    assert_eq!(with_identity(&mut stack, &bound).status(), 200, "the control: the same claims, bound right");
    // Refused. Only the entry sends `notes` identities, and only ones it verified by the same
    // rules, so `notes` takes such a refusal for a configuration the two do not share (500).
    for refused in [&other_audience, &other_type] {
        let response = with_identity(&mut stack, refused);
        assert_eq!((response.status(), response.error_code().as_str()), (500, "misconfigured"), "{}", response.text());
    }
    // The entry will not forward one from the cookie either: it fetches a proper identity.
    let planted = stack.client("na");
    planted.set_cookie("__Host-edgestack_session", &user.cookie("__Host-edgestack_session").unwrap());
    planted.set_cookie("__Host-edgestack_identity", &other_audience);
    let read = stack.send(planted.get(&path).send());
    assert_eq!((read.status(), read.timing("identity")), (200, vec!["refreshed".to_string()]));
    // And what accounts issues names both.
    let issued = user.cookie("__Host-edgestack_identity").unwrap();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(issued.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!((claims["typ"].as_str(), claims["aud"].as_str()), (Some("edgestack-identity"), Some("notes")));
}

/// The old primary acknowledges `lost` while eu (promoted later) has stopped applying, and an
/// anonymous reader in na fills the feed from it; then the primary dies, eu takes over, and the
/// isolate meets the dead primary once (a write, 503) and reads the record.
fn feed_cached_from_a_history_the_failover_ends(stack: &mut Stack, author: &Client, lost: &[&str]) -> Client {
    author.publish_note(stack, "kept", "");
    stack.replicate();
    stack.set_lag("main", "eu", 600_000.0);
    for title in lost {
        let acknowledged =
            stack.send(author.post("/api/notes").json(json!({"title": title, "published": true})).send());
        assert_eq!(acknowledged.status(), 201, "{}", acknowledged.text());
    }
    stack.advance(2_000.0);
    let reader = stack.client_in_region("na");
    let filled = stack.send(reader.get("/api/public/notes").send());
    assert_eq!((filled.cache_status().as_str(), titles(&filled).len()), ("miss", 1 + lost.len()));
    stack.advance(1_500.0);
    kill_primary(stack, "main");
    promote_and_publish(stack, "main", "eu");
    stack.advance(RECHECK_INTERVAL_MS);
    let unknown = stack.send(author.post("/api/notes").json(json!({"title": "unknown"})).send());
    assert_eq!(unknown.status(), 503, "{}", unknown.text());
    reader
}

/// A review's report: cache entries and floors held an index only, and after a failover the new
/// term's indexes carry on below the old primary's. A feed page cached from the old primary at
/// index 24 (with a write the failover lost) passed the author's new change at index 24 of term
/// 2: the author did not see their own note, and nobody did for the entry's life.
#[test]
fn after_a_failover_a_page_cached_from_the_old_history_hides_no_change_of_the_new_one() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "author@example.com");
    let reader = feed_cached_from_a_history_the_failover_ends(&mut stack, &author, &["lost"]);
    let old_index = stack.replication_index("main", None);

    let mine = stack.send(author.post("/api/notes").json(json!({"title": "mine", "published": true})).send());
    assert_eq!(mine.status(), 201, "{}", mine.text());
    let (term, index) = token_of(&author.cookie("__Host-edgestack_consistency").unwrap());
    assert!(
        term == 2 && index <= old_index,
        "the new term's index ({index}) is not above the old history's ({old_index})"
    );

    let own = stack.send(author.get("/api/public/notes").send());
    assert_eq!(titles(&own), ["kept", "mine"], "the author's own change, at once ({})", own.cache_status());
    stack.advance(10_000.0);
    for client in [&author, &reader] {
        let later = stack.send(client.get("/api/public/notes").send());
        assert_eq!(titles(&later), ["kept", "mine"], "after the change's invalidation ({})", later.cache_status());
    }
}

/// The same report, for everyone: after the failover the author unpublishes a note, and the
/// page cached from the old history (at an index above the unpublish's) kept listing it from KV.
/// Read here by another isolate of the location that has not met the failover (it knows no
/// record), so only the floor's term can tell the two histories apart.
#[test]
fn after_a_failover_an_unpublish_reaches_a_page_cached_from_the_old_history() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "author@example.com");
    feed_cached_from_a_history_the_failover_ends(&mut stack, &author, &["lost 0", "lost 1", "lost 2"]);
    let kept = rows_on(&stack, "main", "eu", "SELECT id FROM notes WHERE title = 'kept'").remove(0);

    let unpublished = stack.send(author.delete(&format!("/api/notes/{kept}/publication")).send());
    assert_eq!(unpublished.status(), 200, "{}", unpublished.text());
    stack.advance(2_000.0);
    let reader = stack.client_of_another_isolate("na");
    let later = stack.send(reader.get("/api/public/notes").send());
    assert_eq!(titles(&later), Vec::<String>::new(), "after the unpublish ({})", later.cache_status());
}

/// A second review's report, against the first fix (versions ordered by term first): a replica
/// behind when the failover came follows the new primary, and reports its term, before it has
/// applied the old term's last changes. Its read from before an unpublish the new history kept
/// was labelled term 2 at an index below the unpublish, passed the unpublish's term-1 floor and
/// was stored: readers whose own replica has the change got the note from the cache.
#[test]
fn a_replica_that_follows_the_new_primary_before_catching_up_does_not_undo_an_unpublish() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "author@example.com");
    let id = author.publish_note(&mut stack, "note", "");
    stack.replicate();
    stack.set_lag("main", "ap", 600_000.0);
    let path = format!("/api/public/notes/{id}");
    let unpublished = stack.send(author.delete(&format!("/api/notes/{id}/publication")).send());
    assert_eq!(unpublished.status(), 200, "{}", unpublished.text());
    let change = stack.replication_index("main", None);
    stack.replicate();
    assert_eq!(promote_and_publish(&mut stack, "main", "eu"), 2);
    stack.advance(1_500.0);
    stack.replicate();
    let ap =
        (stack.net.cluster("main", |cluster| cluster.term(Some("ap"))), stack.replication_index("main", Some("ap")));
    assert!(ap.0 == Some(2) && ap.1 < change, "ap follows term 2 at {ap:?}, below the unpublish at {change}");

    let far = stack.send(stack.client_in_region("ap").get(&path).send());
    assert_eq!(far.status(), 200, "ap's reader sees its replica's lag: {}", far.text());
    stack.advance(500.0);
    let near = stack.send(stack.client_in_region("eu").get(&path).send());
    assert_eq!(near.status(), 404, "a reader whose replica has the change: {} {}", near.cache_status(), near.text());
    stack.advance(10_000.0);
    let other = stack.send(stack.client_of_another_isolate("eu").get(&path).send());
    assert_eq!(other.status(), 404, "another isolate: {} {}", other.cache_status(), other.text());
}

/// A second review's report: during a gradual deployment after any failover, the release before
/// writes its floors as plain indexes (it knows no terms); read as of the first term and ordered
/// by term first, they were below every entry of the new term, and a note that release deleted
/// was served from KV for the entry's 60 s. Compared by index, as that release compares them.
#[test]
fn a_floor_the_release_before_wrote_after_a_failover_still_hides_what_it_replaced() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "author@example.com");
    let id = author.publish_note(&mut stack, "note", "");
    stack.replicate();
    assert_eq!(promote_and_publish(&mut stack, "main", "eu"), 2);
    stack.advance(RECHECK_INTERVAL_MS);
    let after = stack.send(author.post("/api/notes").json(json!({"title": "after"})).send());
    assert_eq!(after.status(), 201, "{}", after.text());
    stack.replicate();
    stack.advance(2_000.0);
    let path = format!("/api/public/notes/{id}");
    let filled = stack.send(stack.client_in_region("eu").get(&path).send());
    assert_eq!((filled.status(), filled.cache_status().as_str()), (200, "miss"), "{}", filled.text());
    stack.advance(1_000.0);

    // The release before deletes the note on the new primary and leaves its floors as it writes
    // them: the change's index, as a plain number, under the shared keys.
    rows_on(&stack, "main", "eu", &format!("DELETE FROM notes WHERE id = '{id}'"));
    let index = stack.replication_index("main", Some("eu"));
    let now = stack.now_ms();
    for key in [format!("v1/floor/note/{id}"), "v1/floor/feed".to_string()] {
        stack.kv.borrow_mut().put("na", &key, index.to_string().into_bytes(), 300, now).unwrap();
    }
    stack.replicate();
    stack.advance(10_000.0);
    let later = stack.send(stack.client_of_another_isolate("eu").get(&path).send());
    assert_eq!(later.status(), 404, "{} {}", later.cache_status(), later.text());
}

/// A third review's report: an isolate that knows of the failover would not serve rows a
/// replica still on the old term read past where that term ended (they hold the lost writes),
/// yet stored them in memory and KV for isolates that know less. It answers its reader (a public
/// read with no token asks nothing of the history) and keeps nothing.
#[test]
fn rows_of_a_dead_branch_are_not_put_in_the_cache_for_others() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "author@example.com").in_region("ap");
    author.publish_note(&mut stack, "kept", "");
    stack.replicate();
    stack.set_lag("main", "eu", 60_000.0);
    for n in 0..3 {
        let lost =
            stack.send(author.post("/api/notes").json(json!({"title": format!("lost {n}"), "published": true})).send());
        assert_eq!(lost.status(), 201, "{}", lost.text());
    }
    stack.replicate();
    kill_primary(&stack, "main");
    promote_and_publish(&mut stack, "main", "eu");
    let unknown = stack.send(author.post("/api/notes").json(json!({"title": "unknown"})).send());
    assert_eq!(unknown.status(), 503, "the isolate reads the record on this failure");

    let from_ap = stack.send(stack.client_in_region("ap").get("/api/public/notes").send());
    assert_eq!((from_ap.status(), from_ap.cache_status().as_str()), (200, "miss"), "{}", from_ap.text());
    assert_eq!(titles(&from_ap).len(), 4, "ap still answers from the old term's tail");
    let again = stack.send(stack.client_in_region("ap").get("/api/public/notes").send());
    assert_eq!(again.cache_status(), "miss", "not kept in this isolate");
    let elsewhere = stack.send(stack.client_of_another_isolate("eu").get("/api/public/notes").send());
    assert_eq!(titles(&elsewhere), ["kept"], "{}: nothing of the dead branch in KV", elsewhere.cache_status());
}

/// The client's last note was lost in the failover, the isolate knows it (it
/// met the fenced primary and read the record) and corrects the client's cookie to where term 1
/// ended. The eu replica applied the lost entries and, for the second before it finds the new
/// primary, still answers under term 1 at an index above that end: it meets the corrected
/// requirement by index and term, so the client is shown its lost note from a branch the
/// isolate knows is dead (and would neither serve from the cache nor store there), and it
/// vanishes a moment later. The token table promises "its writes up to end(t) … a note it just
/// created is missing".
#[test]
fn an_old_term_token_is_not_served_rows_of_the_branch_the_failover_left_behind() {
    let mut stack = Stack::monolith();
    let user = signed_up_user(&mut stack, "branch@example.com").in_region("eu");
    let other = signed_up_user(&mut stack, "other@example.com");
    user.create_note(&mut stack, "kept", "");
    stack.replicate();
    stack.set_lag("main", "ap", 60_000.0);
    user.create_note(&mut stack, "lost", "");
    stack.replicate();
    let (term, index) = token_of(&user.cookie("__Host-edgestack_consistency").unwrap());
    assert_eq!(term, 1);
    assert!(stack.replication_index("main", Some("eu")) >= index, "eu applied the lost note");
    assert_eq!(promote_and_publish(&mut stack, "main", "ap"), 2);
    let end_of_term_1 = stack.replication_index("main", Some("ap"));
    assert!(end_of_term_1 < index, "ap never had it");
    // Another client's write meets the fenced primary: the isolate reads the record.
    other.create_note(&mut stack, "elsewhere", "");
    assert_eq!(stack.logs_containing("is now http://main-ap.sim (term 2)").len(), 1);

    let list = stack.send(user.get("/api/notes").send());

    assert_eq!(list.status(), 200, "{}", list.text());
    assert_eq!(stack.logs_containing("past the end of that term").len(), 1, "the isolate knew the note was lost");
    assert_eq!(titles(&list), ["kept"], "served by {:?}: the lost note from a dead branch", list.db_targets());
}

/// A random failover run's report (`failover_random.rs`, seed 2 of the services shape): an
/// isolate that had not met the first failover read the record only once its read had failed
/// on its replica and on the old primary, and the record named a primary that was down too (a
/// second failure before the operator's next promotion, or the record seen late in another
/// location). The read was refused, 503, though a farther replica the plan had left out was up
/// and held everything, for an anonymous reader and for the author alike.
#[test]
fn a_read_whose_recorded_primary_is_down_too_goes_on_from_the_replicas() {
    let mut stack = Stack::monolith();
    let author = signed_up_user(&mut stack, "author@example.com").in_region("eu");
    let public = author.publish_note(&mut stack, "public", "");
    stack.replicate();
    kill_primary(&stack, "main");
    promote_and_publish(&mut stack, "main", "eu");
    stack.net.set_fault("main", Some("eu"), EndpointFault { down: true, ..EndpointFault::default() });

    let anonymous = stack.send(stack.client_in_region("eu").get(&format!("/api/public/notes/{public}")).send());
    assert_eq!(anonymous.status(), 200, "{} {:?}", anonymous.text(), anonymous.header("server-timing"));
    assert_eq!(anonymous.db_targets(), ["replica-eu", "primary", "primary", "replica-ap"]);
    assert_eq!(anonymous.timing("fallback"), ["replica-eu failed", "primary failed", "primary failed"]);
    stack.advance(RECHECK_INTERVAL_MS);
    let own = stack.send(author.get(&format!("/api/notes/{public}")).send());
    assert_eq!(own.status(), 200, "{} {:?}", own.text(), own.header("server-timing"));
}

/// A note the client just created on the new primary, written there as another isolate that
/// had read the record would have (this one has not): its id, and the client's cookie set to
/// the token that write would have given (term 2, the new primary's index).
fn written_on_the_new_primary(stack: &mut Stack, client: &Client, database: &str, promoted: &str) -> String {
    let id = "newtermnote0000000000A";
    rows_on(
        stack,
        database,
        promoted,
        &format!(
            "INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) \
             SELECT '{id}', owner_id, 'new term', '', NULL, 1, 1 FROM notes LIMIT 1"
        ),
    );
    let token = ConsistencyToken { term: 2, replication_index: stack.replication_index(database, Some(promoted)) };
    client.set_cookie(cookie_name(stack), &token.encode(SIM_CONSISTENCY_KEY, database).unwrap());
    id.to_string()
}

/// A former primary the promotion has not fenced yet (devdb's watch takes about 0.4 s; one cut
/// off from its peers is never fenced) still answers as the primary of its old term. A client
/// whose last write the new primary acknowledged read, through an isolate that had read the
/// record just before the promotion and may not read it again within the second, that old
/// primary's answer: 404 for the note it had just created, and its cookie lowered to the old
/// term; a write it sent was acknowledged there, on a branch the new history never holds. An
/// answer of a term older than the client's last write is now no primary's answer for that
/// client: the read goes on as after a primary failure, and the write is not acknowledged.
#[test]
fn a_former_primary_not_fenced_yet_neither_answers_nor_acknowledges_for_a_client_of_the_new_term() {
    each_shape(|mut stack| {
        let database = stack.notes_db();
        let user = signed_up_user(&mut stack, "unfenced@example.com");
        user.create_note(&mut stack, "before", "");
        stack.replicate();
        // The isolate reads the record on a primary failure (there is none yet), and so may
        // not read it again for a second.
        kill_primary(&stack, database);
        let refused = stack.send(user.post("/api/notes").json(json!({"title": "refused"})).send());
        assert_eq!(refused.status(), 503, "{}", refused.text());
        stack.net.set_fault(database, None, EndpointFault::default());
        stack.net.cluster(database, |cluster| cluster.set_fence_delay(400.0));
        promote_and_publish(&mut stack, database, "ap");
        let mine = written_on_the_new_primary(&mut stack, &user, database, "ap");
        assert_eq!(stack.net.cluster(database, |cluster| cluster.term(None)), Some(1), "not fenced yet");

        let read = stack.send(user.get(&format!("/api/notes/{mine}")).send());

        assert_eq!(read.status(), 200, "{} {:?}", read.text(), read.header("server-timing"));
        assert_eq!(read.json()["note"]["title"], "new term");
        // The old primary's answer is set aside; eu still follows term 1; ap is the new
        // primary, not known to this isolate as one yet.
        assert_eq!(read.db_targets(), ["primary", "replica-eu", "replica-ap"]);
        assert_eq!(read.timing("fallback"), ["primary failed", "replica-eu behind"]);
        assert_eq!(token_of(&user.cookie(cookie_name(&stack)).unwrap()).0, 2, "the cookie keeps its term");

        let write = stack.send(user.post("/api/notes").json(json!({"title": "on the old branch"})).send());
        assert_eq!(stack.net.cluster(database, |cluster| cluster.term(None)), Some(1), "still not fenced");
        assert_ne!(write.status(), 201, "acknowledged by the former primary: {}", write.text());
        assert_eq!(write.status(), 503, "{}", write.text());
        assert!(!note_titles(&stack, database, "ap").contains(&"on the old branch".to_string()));
    });
}

/// A token of a term whose every write the next failover lost (term 2 kept nothing: the
/// replica promoted to term 3 had applied none of them) is corrected to where term 2 began,
/// and the index there is term 1's. The corrected cookie named term 1 (a random run found it):
/// lower than the client had been seen at, so a former primary of term 2 not fenced yet could
/// again answer and acknowledge for it (`Failure::Superseded` needs the newer term). It names
/// the term the isolate knows now.
#[test]
fn a_corrected_cookie_never_names_a_term_older_than_the_clients() {
    each_shape(|mut stack| {
        let database = stack.notes_db();
        let user = signed_up_user(&mut stack, "corrected@example.com");
        user.create_note(&mut stack, "kept", "");
        stack.replicate();
        stack.set_lag(database, "eu", 60_000.0);
        let term_2_began = stack.replication_index(database, Some("ap"));
        assert_eq!(promote_and_publish(&mut stack, database, "ap"), 2);
        user.create_note(&mut stack, "on term 2", "");
        assert_eq!(token_of(&user.cookie(cookie_name(&stack)).unwrap()).0, 2);
        // eu, which applied nothing of term 2, becomes term 3's primary; the isolate learns it
        // through another client's write.
        stack.advance(RECHECK_INTERVAL_MS);
        assert_eq!(promote_and_publish(&mut stack, database, "eu"), 3);
        let other = signed_up_user(&mut stack, "other@example.com");
        other.create_note(&mut stack, "learns term 3", "");
        // Past the window in which the isolate's own writes raise a token it hands out.
        stack.advance(6_000.0);

        let list = stack.send(user.get("/api/notes").send());

        assert_eq!(list.status(), 200, "{}", list.text());
        assert_eq!(titles(&list), ["kept"], "term 2's note was lost");
        assert_eq!(token_of(&user.cookie(cookie_name(&stack)).unwrap()), (3, term_2_began));
    });
}
