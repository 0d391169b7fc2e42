//! The edge data path (Levels 3 and 4) on real SQLite replicas and a virtual clock: nearest
//! replica for reads, the primary for writes, fallbacks (`failed` / `behind`), deadlines (a
//! replica 300 ms, the primary 5 s → 503 + `Retry-After`), circuit breakers (open after two
//! failures, probed after 10 s), the signed read-your-writes token, and the revocation bound.
//!
//! The Worker sits in `eu`: the eu replica is 5 ms away, the na primary 80 ms.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde_json::json;

use crate::support::{Client, EndpointFault, Options, Response, Shape, Stack, signed_up_user};

const CONSISTENCY_COOKIE: &str = "__Host-edgestack_consistency";
const SESSION: &str = "__Host-edgestack_session";
const IDENTITY: &str = "__Host-edgestack_identity";

/// One Worker in `eu`, a primary in `na`, replicas in `eu` and `ap`.
fn stack_in_eu() -> Stack {
    Stack::new(Options { locations: vec!["eu"], ..Options::default() })
}

fn stack_in_eu_with(vars: &[(&'static str, &str)]) -> Stack {
    let vars = vars.iter().map(|(name, value)| (*name, value.to_string())).collect();
    Stack::new(Options { locations: vec!["eu"], vars, ..Options::default() })
}

/// `dur` of each `Server-Timing` entry named `metric`, in order.
fn durations(response: &Response, metric: &str) -> Vec<f64> {
    let timing = response.header("server-timing").unwrap_or_default();
    timing
        .split(',')
        .filter(|entry| entry.trim().starts_with(&format!("{metric};")))
        .filter_map(|entry| entry.split(';').find_map(|p| p.trim().strip_prefix("dur=")).and_then(|d| d.parse().ok()))
        .collect()
}

/// Sends and measures the request's virtual time.
fn timed(stack: &mut Stack, call: crate::support::Call) -> (Response, f64) {
    let started = stack.now_ms();
    let response = stack.send(call.send());
    (response, stack.now_ms() - started)
}

fn fault(configure: impl FnOnce(&mut EndpointFault)) -> EndpointFault {
    let mut fault = EndpointFault::default();
    configure(&mut fault);
    fault
}

#[test]
fn reads_go_to_the_nearest_replica_and_writes_to_the_primary() {
    let mut stack = stack_in_eu();
    let user = signed_up_user(&mut stack, "reader@example.com");
    assert!(user.cookie(CONSISTENCY_COOKIE).is_some(), "a write hands out a read-your-writes token");
    let replicas_before = (stack.pipelines("main", Some("eu")), stack.pipelines("main", Some("ap")));
    let note = stack.send(user.post("/api/notes").json(json!({"title": "t"})).send());
    assert_eq!(note.db_targets(), ["primary"]);
    let replicas_after = (stack.pipelines("main", Some("eu")), stack.pipelines("main", Some("ap")));
    assert_eq!(replicas_after, replicas_before, "a write never reaches a replica");
    stack.replicate();
    let (replica_before, primary_before) = (stack.pipelines("main", Some("eu")), stack.pipelines("main", None));

    let read = stack.send(user.get("/api/notes").send());

    assert_eq!(read.status(), 200);
    assert_eq!(read.db_targets(), ["replica-eu"]);
    assert_eq!(read.header("x-edgestack-db-requests"), Some("1"));
    assert_eq!(stack.pipelines("main", Some("eu")) - replica_before, 1);
    assert_eq!(stack.pipelines("main", None) - primary_before, 0);
    // From na the primary (same region) is nearer than any replica; from ap its own replica.
    let from_na = stack.send(user.in_region("na").get("/api/public/notes").send());
    assert_eq!(from_na.db_targets(), ["primary"]);
    let from_ap = stack.send(user.in_region("ap").get("/api/notes").send());
    assert_eq!(from_ap.db_targets(), ["replica-ap"]);
}

#[test]
fn a_lagging_replica_sends_the_writer_to_the_primary() {
    let mut stack = stack_in_eu();
    let writer = signed_up_user(&mut stack, "writer@example.com");
    // The replica has the schema and the session; only the note is past its lag.
    stack.replicate();
    stack.set_lag("main", "eu", 3_000.0);
    let id = writer.create_note(&mut stack, "fresh", "just written");
    let (replica_before, primary_before) = (stack.pipelines("main", Some("eu")), stack.pipelines("main", None));

    let read = stack.send(writer.get(&format!("/api/notes/{id}")).send());

    assert_eq!(read.status(), 200, "{}", read.text());
    assert_eq!(read.json()["note"]["body"], "just written");
    assert_eq!(read.db_targets(), ["replica-eu", "primary"], "the replica was behind the token");
    assert!(read.header("server-timing").unwrap().contains("fallback;desc=\"replica-eu behind\""));
    assert_eq!(read.header("x-edgestack-db-requests"), Some("2"));
    assert_eq!(stack.pipelines("main", Some("eu")) - replica_before, 1);
    assert_eq!(stack.pipelines("main", None) - primary_before, 1);
}

#[test]
fn without_the_token_the_same_session_reads_the_lagging_replica() {
    let mut stack = stack_in_eu();
    let writer = signed_up_user(&mut stack, "token@example.com");
    stack.replicate();
    stack.set_lag("main", "eu", 5_000.0);
    let id = writer.create_note(&mut stack, "fresh", "");
    let session = writer.cookie("__Host-edgestack_session").unwrap();
    let token = writer.cookie(CONSISTENCY_COOKIE).unwrap();
    // `2.<term>.<index>.<mac>` (datapath::consistency).
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let (term, index) = signed.rsplit_once('.').unwrap();
    let read_with = |stack: &mut Stack, consistency: Option<String>| {
        let cookie = match consistency {
            Some(value) => format!("__Host-edgestack_session={session}; {CONSISTENCY_COOKIE}={value}"),
            None => format!("__Host-edgestack_session={session}"),
        };
        stack.send(stack.client("eu").get(&format!("/api/notes/{id}")).header("cookie", &cookie).send())
    };

    let with_token = read_with(&mut stack, Some(token.clone()));
    let without = read_with(&mut stack, None);
    let tampered_index =
        read_with(&mut stack, Some(format!("{term}.{}.{signature}", index.parse::<u64>().unwrap() + 1)));
    let forged_signature = read_with(&mut stack, Some(format!("{signed}.{}", "A".repeat(43))));
    let garbage = read_with(&mut stack, Some("not-a-token".to_string()));

    assert_eq!((with_token.status(), with_token.db_targets()), (200, vec!["replica-eu".into(), "primary".into()]));
    for (what, response) in [
        ("no token", &without),
        ("tampered index", &tampered_index),
        ("forged", &forged_signature),
        ("garbage", &garbage),
    ] {
        assert_eq!(response.status(), 404, "{what}: ignored, so the lagging replica answers: {}", response.text());
        assert_eq!(response.db_targets(), ["replica-eu"], "{what}");
        assert!(response.header("set-cookie").is_none(), "{what}: a read hands out no token");
    }
}

/// The replication index a read-your-writes cookie carries (`2.<term>.<index>.<mac>`).
fn token_index(token: &str) -> u64 {
    token.split('.').nth(2).and_then(|index| index.parse().ok()).unwrap_or_else(|| panic!("not a token: {token}"))
}

#[test]
fn the_token_is_a_signed_cookie_with_the_primary_index_renewed_only_by_writes() {
    let mut stack = stack_in_eu();
    let user = signed_up_user(&mut stack, "renew@example.com");
    let first = user.cookie(CONSISTENCY_COOKIE).unwrap();
    assert_eq!(token_index(&first), stack.replication_index("main", None));

    let created = stack.send(user.post("/api/notes").json(json!({"title": "t"})).send());
    let read = stack.send(user.get("/api/notes").send());

    let set = created.headers_named("set-cookie").into_iter().find(|c| c.starts_with(CONSISTENCY_COOKIE)).unwrap();
    for attribute in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax", "; Max-Age=300"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    let second = user.cookie(CONSISTENCY_COOKIE).unwrap();
    assert_eq!(token_index(&second), stack.replication_index("main", None));
    assert!(token_index(&second) > token_index(&first));
    assert!(read.headers_named("set-cookie").is_empty(), "a read renews nothing");
}

#[test]
fn each_service_database_has_its_own_read_your_writes_cookie() {
    let mut stack = Stack::new(Options { shape: Shape::Services, locations: vec!["eu"], ..Options::default() });
    let user = signed_up_user(&mut stack, "split@example.com");
    assert!(user.cookie("__Host-edgestack_consistency_accounts").is_some());
    assert_eq!(user.cookie("__Host-edgestack_consistency_notes"), None, "sign-up writes no note");
    assert_eq!(user.cookie(CONSISTENCY_COOKIE), None);
    stack.replicate();
    stack.set_lag("notes", "eu", 5_000.0);

    let id = user.create_note(&mut stack, "fresh", "");
    let read = stack.send(user.get(&format!("/api/notes/{id}")).send());
    let me = stack.send(user.get("/api/me").send());

    let notes_token = user.cookie("__Host-edgestack_consistency_notes").unwrap();
    assert_eq!(token_index(&notes_token), stack.replication_index("notes", None));
    assert_eq!(read.status(), 200, "{}", read.text());
    assert_eq!(read.db_targets(), ["replica-eu", "primary"], "the notes token gates the notes replica");
    assert_eq!(read.timing("fallback"), ["replica-eu behind"]);
    let without_token = stack.client("eu");
    for name in [SESSION, IDENTITY] {
        without_token.set_cookie(name, &user.cookie(name).unwrap());
    }
    let stale = stack.send(without_token.get(&format!("/api/notes/{id}")).send());
    assert_eq!((stale.status(), stale.db_targets()), (404, vec!["replica-eu".to_string()]), "the replica is behind");
    assert_eq!(me.db_targets(), ["replica-eu"], "the accounts replica is not held to the notes index");
}

/// One browser sends two changes at once; the first reaches the primary first (the lower
/// replication index) but its answer comes back last, so its `Set-Cookie` is the one the
/// browser keeps. That cookie must still cover the second change: the replica holds the first
/// change and not the second, and the browser's next read of the second note must not be
/// served from it. Both shapes; the Worker in `eu`.
#[test]
fn overlapping_changes_leave_a_cookie_that_covers_both() {
    for shape in [Shape::Monolith, Shape::Services] {
        let mut stack = Stack::new(Options { shape, locations: vec!["eu"], ..Options::default() });
        let database = stack.notes_db();
        let user = signed_up_user(&mut stack, "both@example.com");
        let first = user.create_note(&mut stack, "first", "");
        let second = user.create_note(&mut stack, "second", "");
        stack.replicate();

        // The first change's round trip to the primary is slow both ways.
        stack.net.set_fault(database, None, fault(|f| f.extra_latency_ms = 200.0));
        let slow =
            stack.rt.spawn(user.patch(&format!("/api/notes/{first}")).json(json!({"title": "first, edited"})).send());
        stack.advance(300.0);
        stack.net.set_fault(database, None, EndpointFault::default());
        // The replica applies the first change, then falls far behind.
        stack.replicate();
        let first_index = stack.replication_index(database, Some("eu"));
        stack.set_lag(database, "eu", 60_000.0);
        let fast =
            stack.send(user.patch(&format!("/api/notes/{second}")).json(json!({"title": "second, edited"})).send());
        let slow = stack.rt.wait(slow);
        assert_eq!((slow.status(), fast.status()), (200, 200), "{shape:?}: {} / {}", slow.text(), fast.text());
        assert_eq!(
            stack.replication_index(database, Some("eu")),
            first_index,
            "{shape:?}: the replica lacks the second"
        );

        let cookie = consistency_cookie(shape);
        let token_of = |response: &Response| {
            let set = response.headers_named("set-cookie").into_iter().find(|set| set.starts_with(cookie)).unwrap();
            token_index(set.split(';').next().unwrap().split_once('=').unwrap().1)
        };
        assert!(token_of(&fast) > first_index, "{shape:?}: the second change's own token is past the replica");
        let kept = token_index(&user.cookie(cookie).unwrap());
        assert!(kept >= token_of(&fast), "{shape:?}: the cookie the browser kept ({kept}) covers both changes");
        let read = stack.send(user.get(&format!("/api/notes/{second}")).send());
        assert_eq!(read.json()["note"]["title"], "second, edited", "{shape:?}: {:?}", read.db_targets());
        assert_eq!(read.db_targets(), ["replica-eu", "primary"], "{shape:?}");
    }
}

fn consistency_cookie(shape: Shape) -> &'static str {
    match shape {
        Shape::Monolith => CONSISTENCY_COOKIE,
        Shape::Services => "__Host-edgestack_consistency_notes",
    }
}

/// Ten thousand write → read pairs from eight users while the replica's lag moves between 0
/// and 2 s: every read shows the write before it.
#[test]
fn ten_thousand_write_read_pairs_see_no_stale_read() {
    const USERS: usize = 8;
    const PAIRS_PER_USER: usize = 1_250;
    let mut stack = stack_in_eu();
    let users: Vec<(Client, String)> = (0..USERS)
        .map(|n| {
            let client = signed_up_user(&mut stack, &format!("pair{n}@example.com"));
            let id = client.create_note(&mut stack, "v0", "");
            (client, id)
        })
        .collect();
    let (stale, from_replica, fell_back) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let done = Rc::new(Cell::new(0));
    let lags_seen = Rc::new(RefCell::new(Vec::new()));

    let clock = stack.rt.clock();
    let net = stack.net.clone();
    {
        let (done, lags_seen) = (done.clone(), lags_seen.clone());
        stack.rt.spawn(async move {
            for lag_ms in [0.0, 500.0, 2_000.0, 0.0, 1_000.0, 2_000.0, 200.0].iter().cycle() {
                if done.get() == USERS {
                    break;
                }
                net.cluster("main", |cluster| cluster.set_lag("eu", *lag_ms, clock.now_ms())).unwrap();
                lags_seen.borrow_mut().push(*lag_ms);
                clock.sleep(700.0).await;
            }
        });
    }
    let workers: Vec<_> = users
        .into_iter()
        .map(|(client, id)| {
            let (stale, from_replica, fell_back, done) =
                (stale.clone(), from_replica.clone(), fell_back.clone(), done.clone());
            stack.rt.spawn(async move {
                for n in 1..=PAIRS_PER_USER {
                    let title = format!("v{n}");
                    let write = client.patch(&format!("/api/notes/{id}")).json(json!({"title": title})).send().await;
                    assert_eq!(write.status(), 200, "{}", write.text());
                    let read = client.get(&format!("/api/notes/{id}")).send().await;
                    assert_eq!(read.status(), 200, "{}", read.text());
                    if read.json()["note"]["title"] != title.as_str() {
                        stale.set(stale.get() + 1);
                    }
                    match read.db_targets().as_slice() {
                        [only] if only == "replica-eu" => from_replica.set(from_replica.get() + 1),
                        _ => fell_back.set(fell_back.get() + 1),
                    }
                }
                done.set(done.get() + 1);
            })
        })
        .collect();
    for worker in workers {
        stack.rt.wait(worker);
    }

    let (from_replica, fell_back) = (from_replica.get(), fell_back.get());
    println!("10,000 pairs: {from_replica} reads served by the replica, {fell_back} by the primary");
    assert_eq!(stale.get(), 0, "stale reads for the writer");
    assert_eq!(from_replica + fell_back, USERS * PAIRS_PER_USER);
    assert!(fell_back > 0, "the lag was never visible, so the test proved nothing");
    assert!(from_replica > 0, "the replica never answered, so the test proved nothing");
    assert!(lags_seen.borrow().contains(&2_000.0), "{:?}", lags_seen.borrow());
}

#[test]
fn a_failing_replica_falls_back_and_its_breaker_opens() {
    let mut stack = stack_in_eu();
    let user = signed_up_user(&mut stack, "breaker@example.com");
    stack.replicate();
    stack.net.set_fault("main", Some("eu"), fault(|f| f.failing = true));

    let responses: Vec<Response> = (0..3).map(|_| stack.send(user.get("/api/me").send())).collect();
    let timing = stack.send(user.get("/api/me").send());

    for me in &responses {
        assert_eq!(me.status(), 200, "{}", me.text());
    }
    assert_eq!(responses[0].db_targets(), ["replica-eu", "primary"]);
    assert_eq!(responses[0].timing("fallback"), ["replica-eu failed"]);
    assert!(
        !timing.header("server-timing").unwrap().contains("fallback;"),
        "breaker open: nothing tried, nothing skipped"
    );
    assert_eq!(responses[1].db_targets(), ["replica-eu", "primary"]);
    assert_eq!(responses[2].db_targets(), ["primary"], "two failures open the breaker: the replica is not tried");
    assert!(!stack.logs_containing("read from replica-eu failed, falling back").is_empty());
}

#[test]
fn an_open_breaker_lets_one_probe_through_after_ten_seconds() {
    let mut stack = stack_in_eu();
    let user = signed_up_user(&mut stack, "probe@example.com");
    stack.replicate();
    stack.net.set_fault("main", Some("eu"), fault(|f| f.down = true));
    for _ in 0..2 {
        assert_eq!(stack.send(user.get("/api/me").send()).db_targets(), ["replica-eu", "primary"]);
    }

    stack.advance(9_900.0);
    let still_open = stack.send(user.get("/api/me").send());
    stack.advance(200.0);
    let failed_probe = stack.send(user.get("/api/me").send());
    let reopened = stack.send(user.get("/api/me").send());
    stack.net.set_fault("main", Some("eu"), EndpointFault::default());
    stack.advance(10_000.0);
    let healed_probe = stack.send(user.get("/api/me").send());
    let closed = stack.send(user.get("/api/me").send());

    assert_eq!(still_open.db_targets(), ["primary"], "open for 10 s");
    assert_eq!(failed_probe.db_targets(), ["replica-eu", "primary"], "one probe after the cool-down");
    assert_eq!(reopened.db_targets(), ["primary"], "a failed probe re-opens at once");
    assert_eq!(healed_probe.db_targets(), ["replica-eu"]);
    assert_eq!(closed.db_targets(), ["replica-eu"], "a successful probe closes the breaker");
}

/// "Then one request is let through to probe it" (`datapath::breaker`). After
/// the cool-down, every request of the isolate under way at once is let through: each waits
/// the replica's whole deadline before falling back.
#[test]
fn after_the_cool_down_concurrent_requests_send_one_probe_not_one_each() {
    let mut stack = stack_in_eu();
    let user = signed_up_user(&mut stack, "probes@example.com");
    stack.replicate();
    stack.net.set_fault("main", Some("eu"), fault(|f| f.extra_latency_ms = 1_000.0));
    for _ in 0..2 {
        assert_eq!(stack.send(user.get("/api/me").send()).timing("fallback"), ["replica-eu failed"]);
    }
    stack.advance(10_000.0);

    let tasks: Vec<_> = (0..3).map(|_| stack.rt.spawn(user.get("/api/me").send())).collect();
    let responses: Vec<Response> = tasks.into_iter().map(|task| stack.rt.wait(task)).collect();

    for response in &responses {
        assert_eq!(response.status(), 200, "{}", response.text());
    }
    let probes = responses.iter().filter(|r| r.db_targets().first().map(String::as_str) == Some("replica-eu")).count();
    assert_eq!(probes, 1, "{:?}", responses.iter().map(Response::db_targets).collect::<Vec<_>>());
}

#[test]
fn breakers_live_in_one_isolate_only() {
    let mut stack = Stack::new(Options { locations: vec!["eu", "ap"], ..Options::default() });
    let user = signed_up_user(&mut stack, "isolates@example.com");
    stack.replicate();
    stack.net.set_fault("main", Some("eu"), fault(|f| f.failing = true));
    for _ in 0..2 {
        stack.send(user.get("/api/me").send());
    }
    assert_eq!(stack.send(user.get("/api/me").send()).db_targets(), ["primary"], "open in the eu isolate");

    let elsewhere = stack.client("ap").in_region("eu");
    elsewhere.set_cookie("__Host-edgestack_session", &user.cookie("__Host-edgestack_session").unwrap());
    let other_isolate = stack.send(elsewhere.get("/api/me").send());

    assert_eq!(other_isolate.db_targets(), ["replica-eu", "primary"], "the ap isolate has its own breakers");
}

#[test]
fn a_failed_nearest_replica_falls_back_to_a_nearer_replica_before_the_primary() {
    let mut stack = Stack::new(Options { locations: vec!["ap"], ..Options::default() });
    let user = signed_up_user(&mut stack, "ap@example.com");
    stack.replicate();
    stack.net.set_fault("main", Some("ap"), fault(|f| f.down = true));

    let me = stack.send(user.get("/api/me").send());

    assert_eq!(me.status(), 200);
    assert_eq!(me.db_targets(), ["replica-ap", "replica-eu"], "from ap the eu replica (160 ms) beats na (180 ms)");
    assert_eq!(me.timing("fallback"), ["replica-ap failed"]);
}

fn check_replica_deadline(
    vars: &[(&'static str, &str)],
    extra_latency_ms: f64,
    expected: (&[&str], std::ops::Range<f64>),
) {
    let mut stack = stack_in_eu_with(vars);
    let user = signed_up_user(&mut stack, "deadline@example.com");
    stack.replicate();
    stack.net.set_fault("main", Some("eu"), fault(|f| f.extra_latency_ms = extra_latency_ms));

    let (me, elapsed) = timed(&mut stack, user.get("/api/me"));

    assert_eq!(me.status(), 200, "{}", me.text());
    assert_eq!(me.db_targets(), expected.0, "{vars:?} +{extra_latency_ms} ms");
    assert!(expected.1.contains(&elapsed), "{vars:?} +{extra_latency_ms} ms took {elapsed} ms");
}

#[test]
fn a_slow_replica_is_abandoned_at_its_deadline() {
    // The default deadline is 300 ms; then the primary (80 ms away) answers.
    check_replica_deadline(&[], 3_000.0, (&["replica-eu", "primary"], 380.0..390.0));
    check_replica_deadline(&[("REPLICA_DEADLINE_MS", "300")], 3_000.0, (&["replica-eu", "primary"], 380.0..390.0));
    check_replica_deadline(&[("REPLICA_DEADLINE_MS", "100")], 3_000.0, (&["replica-eu", "primary"], 180.0..190.0));
    // A replica answering just within its deadline is kept.
    check_replica_deadline(&[], 140.0, (&["replica-eu"], 285.0..300.0));
    // Past the deadline even an answer already on its way is abandoned.
    check_replica_deadline(&[], 160.0, (&["replica-eu", "primary"], 380.0..390.0));
}

#[test]
fn an_abandoned_replica_reports_its_deadline_and_the_fallback_in_server_timing() {
    let mut stack = stack_in_eu();
    let user = signed_up_user(&mut stack, "timing@example.com");
    stack.replicate();
    stack.net.set_fault("main", Some("eu"), fault(|f| f.extra_latency_ms = 3_000.0));

    let me = stack.send(user.get("/api/me").send());

    let db = durations(&me, "db");
    assert_eq!(db.len(), 2, "{:?}", me.header("server-timing"));
    assert!((300.0..301.0).contains(&db[0]), "replica abandoned at 300 ms: {db:?}");
    assert!((80.0..81.0).contains(&db[1]), "the primary's round trip: {db:?}");
    assert_eq!(me.timing("fallback"), ["replica-eu failed"]);
}

#[test]
fn a_slow_primary_answers_503_with_retry_after_at_its_5_s_deadline() {
    let mut stack = stack_in_eu();
    let user = signed_up_user(&mut stack, "slow@example.com");
    let before = stack.query_text("main", "SELECT CAST(count(*) AS TEXT) FROM notes");
    stack.net.set_fault("main", None, fault(|f| f.extra_latency_ms = 10_000.0));

    let (write, write_ms) = timed(&mut stack, user.post("/api/notes").json(json!({"title": "late"})));
    // A read with no replica nearer than the primary has the same deadline; then the replicas
    // the plan left out as farther answer it (docs/failover.md), rather than a 503.
    let (read, read_ms) = timed(&mut stack, user.in_region("na").get("/api/public/notes"));

    assert_eq!((write.status(), write.error_code().as_str()), (503, "database_unavailable"));
    assert_eq!(write.header("retry-after"), Some("5"));
    assert!((5_000.0..5_010.0).contains(&write_ms), "the write gave up after {write_ms} ms");
    assert_eq!((read.status(), read.db_targets()), (200, vec!["primary".to_string(), "replica-eu".to_string()]));
    assert_eq!(read.timing("fallback"), ["primary failed"]);
    assert!((5_000.0..5_200.0).contains(&read_ms), "the read was answered after {read_ms} ms");
    assert_eq!(stack.query_text("main", "SELECT CAST(count(*) AS TEXT) FROM notes"), before, "never arrived");
}

#[test]
fn with_the_primary_down_writes_get_503_and_reads_continue_from_the_replica() {
    let mut stack = stack_in_eu();
    let user = signed_up_user(&mut stack, "down@example.com");
    let id = user.publish_note(&mut stack, "public", "still readable");
    stack.replicate();

    stack.net.set_fault("main", None, fault(|f| f.down = true));
    let (write, elapsed) = timed(&mut stack, user.post("/api/notes").json(json!({"title": "lost?"})));
    let read = stack.send(stack.client("eu").get(&format!("/api/public/notes/{id}")).send());
    let me = stack.send(user.get("/api/me").send());
    stack.net.set_fault("main", None, EndpointFault::default());
    let after = stack.send(user.post("/api/notes").json(json!({"title": "back"})).send());

    assert_eq!((write.status(), write.error_code().as_str()), (503, "database_unavailable"));
    assert_eq!(write.header("retry-after"), Some("5"));
    assert!(elapsed < 10.0, "a refused connection fails at once, took {elapsed} ms");
    assert_eq!(read.status(), 200, "{}", read.text());
    assert_eq!(read.json()["note"]["body"], "still readable");
    assert_eq!(me.status(), 200, "sessions are read from the replica");
    assert_eq!(me.db_targets(), ["replica-eu"]);
    assert_eq!(after.status(), 201, "{}", after.text());
}

/// A write the primary committed but whose answer missed the deadline is answered 503 (the
/// client cannot know); what matters is that no write answered 201 is ever missing.
#[test]
fn every_acknowledged_write_is_stored_while_the_primary_is_down_or_too_slow() {
    let mut stack = stack_in_eu();
    let writer = signed_up_user(&mut stack, "ledger@example.com");
    let phases = [
        EndpointFault::default(),
        fault(|f| f.down = true),
        fault(|f| f.extra_latency_ms = 3_000.0),
        fault(|f| f.failing = true),
        EndpointFault::default(),
    ];
    let (mut acknowledged, mut statuses) = (Vec::new(), Vec::new());

    for (phase, endpoint_fault) in phases.into_iter().enumerate() {
        stack.net.set_fault("main", None, endpoint_fault);
        for n in 0..5 {
            let call = writer.post("/api/notes").json(json!({"title": format!("ledger {phase}.{n}")}));
            let response = stack.send(call.send());
            statuses.push(response.status());
            if response.status() == 201 {
                acknowledged.push(response.json()["note"]["id"].as_str().unwrap().to_string());
            }
        }
    }

    assert!(statuses.iter().all(|s| *s == 201 || *s == 503), "only success or 503: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 15, "{statuses:?}");
    let stored = stack.query_text("main", "SELECT id FROM notes");
    let missing: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert_eq!(acknowledged.len(), 10);
    assert_eq!(stored.len(), 15, "the slow phase's writes committed although their answers were lost");
}

#[test]
fn a_replica_without_the_schema_is_passed_over_as_behind() {
    // The replicas have not applied even the migrations.
    let mut stack = Stack::new(Options { locations: vec!["eu"], replica_lag_ms: 1.0e9, ..Options::default() });
    let anonymous = stack.client("eu");

    let feed = stack.send(anonymous.get("/api/public/notes").send());

    assert_eq!(feed.status(), 200, "{}", feed.text());
    assert_eq!(feed.db_targets(), ["replica-eu", "primary"]);
    assert_eq!(feed.timing("fallback"), ["replica-eu behind"]);
    assert_eq!(stack.replication_index("main", Some("eu")), 0);
}

/// The revocation bound: a session ended on one device stops working on another device (which
/// has no read-your-writes token) once its nearest replica has applied the change — the
/// replication lag — and at once for the device that signed out.
#[test]
fn a_revoked_session_is_refused_everywhere_within_the_replica_lag() {
    const LAG_MS: f64 = 1_500.0;
    const POLL_MS: f64 = 50.0;
    let mut stack = stack_in_eu();
    stack.set_lag("main", "eu", LAG_MS);
    let phone = signed_up_user(&mut stack, "revoke@example.com");
    let laptop = stack.client("eu");
    let signed_in = stack.send(
        laptop
            .post("/api/sessions")
            .json(json!({"email": "revoke@example.com", "password": crate::support::PASSWORD}))
            .send(),
    );
    assert_eq!(signed_in.status(), 200, "credentials come from the primary");
    stack.advance(LAG_MS + 10.0);
    // A device holding the laptop's session but no read-your-writes token reads the replica.
    let laptop_session = laptop.cookie("__Host-edgestack_session").unwrap();
    let another_device = stack.client("eu");
    another_device.set_cookie("__Host-edgestack_session", &laptop_session);
    let before = stack.send(another_device.get("/api/me").send());
    assert_eq!((before.status(), before.db_targets()), (200, vec!["replica-eu".to_string()]));

    let revoked_at = stack.now_ms();
    assert_eq!(stack.send(laptop.delete("/api/sessions/current").send()).status(), 204);
    laptop.set_cookie("__Host-edgestack_session", &laptop_session);
    assert_eq!(stack.send(laptop.get("/api/me").send()).status(), 401, "the signing-out device: at once");
    let refused_after = loop {
        if stack.send(another_device.get("/api/me").send()).status() == 401 {
            break stack.now_ms() - revoked_at;
        }
        assert!(stack.now_ms() - revoked_at < 2.0 * LAG_MS, "still accepted long after the lag");
        stack.advance(POLL_MS);
    };
    println!("revoked session refused by the replica after {refused_after} ms (lag {LAG_MS} ms)");
    assert!(refused_after >= LAG_MS, "the replica really lagged: {refused_after}");
    assert!(refused_after <= LAG_MS + 2.0 * POLL_MS, "refused within the lag: {refused_after}");
    let phone_me = stack.send(phone.get("/api/me").send());
    assert_eq!(phone_me.status(), 200, "other sessions of the user live on: {}", phone_me.text());
}
