//! Failover: promoting a replica, fencing the old primary, replicas following the new one
//! without losing or mixing applied changes, and terms and roles surviving restarts. Real
//! devdb processes over HTTP, killed with SIGKILL as a crash would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ops::Range;
use std::process::Command;
use std::time::Duration;

use common::{Server, TOKEN, dump, eventually, index, index_of, must, pipeline_with_headers, wait_index};
use serde_json::{Value as Json, json};

const WITHIN: Duration = Duration::from_secs(15);

async fn promote(url: &str) -> (u16, Json) {
    common::post(url, "/_devdb/promote", &json!({})).await
}

async fn follow(url: &str, primary: &str, resync: bool) -> (u16, Json) {
    common::post(url, "/_devdb/follow", &json!({"primary": primary, "resync": resync})).await
}

/// Inserts one row per number; returns the replication index after the last.
async fn insert_rows(url: &str, rows: Range<u32>) -> u64 {
    let mut last = 0;
    for i in rows {
        last = index_of(&must(url, &format!("INSERT INTO t VALUES ({i})")).await);
    }
    last
}

async fn count(url: &str) -> u64 {
    must(url, "SELECT count(*) FROM t").await["rows"][0][0]["value"].as_str().unwrap().parse().unwrap()
}

fn execute(sql: &str) -> Json {
    json!({"requests": [{"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]})
}

/// `devdb <args>` with the test token in the environment; the process's stdout if it succeeded.
fn devdb_cli(args: &[&str]) -> Json {
    let out = Command::new(env!("CARGO_BIN_EXE_devdb")).args(args).env("DEVDB_TOKEN", TOKEN).output().unwrap();
    assert!(out.status.success(), "devdb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn role_of(url: &str) -> String {
    common::stats(url).await["role"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn promotion_makes_a_replica_the_primary_at_its_index_with_a_higher_term() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let replica = Server::replica(&dir.path().join("a.db"), &primary.url);
    must(&primary.url, "CREATE TABLE t(x)").await;
    let last = insert_rows(&primary.url, 0..20).await;
    wait_index(&replica.url, last, WITHIN).await;
    let (_, opened) = common::post(&replica.url, "/v3/pipeline", &json!({"requests": []})).await;
    let baton = opened["baton"].as_str().unwrap().to_owned();
    primary.kill();

    let answer = devdb_cli(&["promote", "--url", &replica.url]);
    assert_eq!((answer["role"].as_str(), answer["term"].as_u64()), (Some("primary"), Some(2)), "{answer}");
    assert_eq!(
        answer["terms"],
        json!([{"term": 1, "from_index": "0"}, {"term": 2, "from_index": last.to_string()}]),
        "term 2 begins where the replica was"
    );
    let stats = common::stats(&replica.url).await;
    assert_eq!((stats["role"].as_str(), stats["term"].as_u64()), (Some("primary"), Some(2)));
    assert_eq!(index(&replica.url).await, last);

    // Writes go on from the replica's index, and say which term took them.
    let (status, body, role, term) = pipeline_with_headers(&replica.url, &execute("INSERT INTO t VALUES (20)")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(index_of(&body["results"][0]["response"]["result"]), last + 1);
    assert_eq!((role.as_str(), term.as_str()), ("primary", "2"));
    assert_eq!(count(&replica.url).await, 21);

    // A stream opened while it was a replica does not carry over into the new role.
    let (status, body) = common::post(&replica.url, "/v3/pipeline", &json!({"baton": baton, "requests": []})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("STREAM_EXPIRED")), "{body}");
    let (status, body) = promote(&replica.url).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("WRONG_ROLE")), "{body}");
}

#[tokio::test]
async fn the_old_primary_refuses_every_request_when_it_comes_back_and_can_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let a = Server::replica(&dir.path().join("a.db"), &primary.url);
    let b = Server::replica(&dir.path().join("b.db"), &primary.url);
    must(&primary.url, "CREATE TABLE t(x)").await;
    let last = insert_rows(&primary.url, 0..20).await;
    wait_index(&a.url, last, WITHIN).await;
    wait_index(&b.url, last, WITHIN).await;
    let old = primary.stop();
    assert_eq!(promote(&a.url).await.0, 200);

    // Back on its file and port with its original arguments: it asks its peers before it
    // answers anyone, learns of term 2, and refuses even the first write.
    let primary = old.start();
    let (status, body, role, term) = pipeline_with_headers(&primary.url, &execute("INSERT INTO t VALUES (-1)")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("PRIMARY_FENCED")), "{body}");
    assert_eq!(body["primary"], json!({"url": a.url, "term": 2}));
    assert!(body["message"].as_str().unwrap().contains(&a.url), "{body}");
    assert_eq!((role.as_str(), term.as_str()), ("fenced", "1"));
    // Reads too: its data may hold writes the new primary never had.
    let (status, body, _, _) = pipeline_with_headers(&primary.url, &execute("SELECT count(*) FROM t")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("PRIMARY_FENCED")), "{body}");
    let (status, body) = common::get(&primary.url, "/_devdb/log?after=0").await;
    assert_eq!((status, body["primary"]["url"].as_str()), (409, Some(a.url.as_str())), "{body}");
    let stats = common::stats(&primary.url).await;
    assert_eq!((stats["role"].as_str(), stats["term"].as_u64()), (Some("fenced"), Some(1)));

    // The fence is stored: alone, with every peer down, it still refuses after a restart.
    let (a_stopped, b_stopped) = (a.stop(), b.stop());
    let primary = primary.stop().start();
    let (status, body, _, _) = pipeline_with_headers(&primary.url, &execute("INSERT INTO t VALUES (-2)")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("PRIMARY_FENCED")), "{body}");

    // It was killed after both replicas had everything, so its log is a prefix of the new
    // primary's: it rejoins as a replica without a resync, and refuses writes as one.
    let a = a_stopped.start();
    let _b = b_stopped.start();
    let w = must(&a.url, "INSERT INTO t VALUES (20)").await;
    let (status, body) = follow(&primary.url, &a.url, false).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("replica")), "{body}");
    wait_index(&primary.url, index_of(&w), WITHIN).await;
    common::assert_same(&dump(&primary.url).await, &dump(&a.url).await);
    let refused = common::exec(&primary.url, "INSERT INTO t VALUES (-3)", json!([])).await.unwrap_err();
    assert_eq!(refused["code"], "SQLITE_READONLY");
}

#[tokio::test]
async fn a_running_primary_fences_itself_once_a_replica_is_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let a = Server::replica(&dir.path().join("a.db"), &primary.url);
    must(&primary.url, "CREATE TABLE t(x)").await;
    let last = insert_rows(&primary.url, 0..5).await;
    wait_index(&a.url, last, WITHIN).await;
    // A client transaction on the old primary, still open when the other node is promoted.
    let (_, open) = common::post(
        &primary.url,
        "/v3/pipeline",
        &json!({"requests": [
            {"type": "execute", "stmt": {"sql": "BEGIN"}},
            {"type": "execute", "stmt": {"sql": "INSERT INTO t VALUES ('in flight')"}}
        ]}),
    )
    .await;
    let baton = open["baton"].as_str().unwrap().to_owned();

    // The old primary is not dead, only superseded (a partition that healed, an operator who
    // promoted too early): its watch asks its peers and fences it.
    assert_eq!(promote(&a.url).await.0, 200);
    let took = eventually(WITHIN, "the running old primary fences itself", || async {
        role_of(&primary.url).await == "fenced"
    })
    .await;
    eprintln!("the old primary fenced itself {took:?} after the promotion");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let (status, body, _, _) = pipeline_with_headers(&primary.url, &execute("INSERT INTO t VALUES (5)")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("PRIMARY_FENCED")), "{body}");
    let (status, body) = common::post(
        &primary.url,
        "/v3/pipeline",
        &json!({"baton": baton, "requests": [{"type": "execute", "stmt": {"sql": "COMMIT"}}]}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (503, Some("PRIMARY_FENCED")), "{body}");
    // The fence did not wait for the open transaction to expire (`took` above): it rolled it
    // back, so nothing of it was committed anywhere.
    assert_eq!(common::stats(&primary.url).await["replication_index"], last.to_string());
    let seen = must(&a.url, "SELECT count(*) FROM t WHERE x = 'in flight'").await;
    assert_eq!(seen["rows"][0][0]["value"], "0");
}

#[tokio::test]
async fn replicas_follow_the_new_primary_and_keep_every_change_they_applied() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let a = Server::replica(&dir.path().join("a.db"), &primary.url);
    let b = Server::replica(&dir.path().join("b.db"), &primary.url);
    let c = Server::replica(&dir.path().join("c.db"), &primary.url);
    must(&primary.url, "CREATE TABLE t(x)").await;
    let first = insert_rows(&primary.url, 0..50).await;
    for r in [&a, &b, &c] {
        wait_index(&r.url, first, WITHIN).await;
    }
    // C is down for the last writes of term 1.
    let c_stopped = c.stop();
    let second = insert_rows(&primary.url, 50..80).await;
    wait_index(&a.url, second, WITHIN).await;
    wait_index(&b.url, second, WITHIN).await;
    primary.kill();
    assert_eq!(promote(&a.url).await.0, 200);
    let w = must(&a.url, "INSERT INTO t VALUES (80)").await;

    // B notices its primary is gone, asks the nodes it knows, and follows the newest term.
    let took = wait_index(&b.url, index_of(&w), WITHIN).await;
    eprintln!("replica B followed the new primary {took:?} after its first write");
    let view = common::get(&b.url, "/_devdb/primary").await.1;
    assert_eq!(view["primary"], json!({"url": a.url, "term": 2}), "{view}");
    // C comes back with its original `--primary` (the dead one), finds the new primary, and
    // copies from it both the term-1 entries it missed (the promoted node kept the log) and
    // term 2's.
    let c = c_stopped.start();
    wait_index(&c.url, index_of(&w), WITHIN).await;
    // Re-pointing on request (the CLI) keeps everything too.
    let answer = devdb_cli(&["follow", "--url", &b.url, "--primary", &a.url]);
    assert_eq!(answer["primary"]["url"], json!(a.url));
    assert!(index(&b.url).await >= index_of(&w), "re-pointing never moves a replica back");

    let last = index_of(&must(&a.url, "INSERT INTO t VALUES (81)").await);
    wait_index(&b.url, last, WITHIN).await;
    wait_index(&c.url, last, WITHIN).await;
    let expected = dump(&a.url).await;
    common::assert_same(&dump(&b.url).await, &expected);
    common::assert_same(&dump(&c.url).await, &expected);
    assert_eq!(count(&c.url).await, 82);
}

#[tokio::test]
async fn a_node_ahead_of_the_new_primary_refuses_to_follow_it_until_told_to_resync() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let a = Server::replica(&dir.path().join("a.db"), &primary.url);
    let b = Server::replica(&dir.path().join("b.db"), &primary.url);
    must(&primary.url, "CREATE TABLE t(x)").await;
    let first = insert_rows(&primary.url, 0..10).await;
    wait_index(&a.url, first, WITHIN).await;
    wait_index(&b.url, first, WITHIN).await;
    // A misses five writes that B applies; then the primary dies and A is promoted: those five
    // are lost to the new history, and B holds them.
    let a_stopped = a.stop();
    let second = insert_rows(&primary.url, 10..15).await;
    wait_index(&b.url, second, WITHIN).await;
    let old = primary.stop();
    let a = a_stopped.start();
    let (status, answer) = promote(&a.url).await;
    assert_eq!((status, answer["terms"][1]["from_index"].as_str()), (200, Some(first.to_string().as_str())));
    must(&a.url, "INSERT INTO t VALUES ('term 2')").await;

    // B finds the new primary, which refuses B's position: B stops and says why, rather than
    // mixing the two histories. It keeps what it applied, and serves nothing meanwhile.
    eventually(WITHIN, "B reports that it diverged", || async { common::stats(&b.url).await["diverged"].is_string() })
        .await;
    assert_eq!(index(&b.url).await, second);
    let (status, body, _, _) = pipeline_with_headers(&b.url, &execute("SELECT count(*) FROM t")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("REPLICA_DIVERGED")), "{body}");
    let (status, body) = follow(&b.url, &a.url, false).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("DIVERGED")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(&format!("5 entries after index {first}")), "{message}");

    // Told to resync, it drops its data and copies the new primary's.
    let (status, body) = follow(&b.url, &a.url, true).await;
    assert_eq!(status, 200, "{body}");
    wait_index(&b.url, index(&a.url).await, WITHIN).await;
    common::assert_same(&dump(&b.url).await, &dump(&a.url).await);
    assert_eq!(count(&b.url).await, 11);

    // The old primary comes back fenced, holds the same five entries, and rejoins the same way.
    let old = old.start();
    assert_eq!(role_of(&old.url).await, "fenced");
    let (status, body) = follow(&old.url, &a.url, false).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("DIVERGED")), "{body}");
    assert_eq!(follow(&old.url, &a.url, true).await.0, 200);
    wait_index(&old.url, index(&a.url).await, WITHIN).await;
    common::assert_same(&dump(&old.url).await, &dump(&a.url).await);
}

#[tokio::test]
async fn terms_and_roles_survive_restarts_and_grow_with_each_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let a = Server::replica(&dir.path().join("a.db"), &primary.url);
    must(&primary.url, "CREATE TABLE t(x)").await;
    let last = insert_rows(&primary.url, 0..5).await;
    wait_index(&a.url, last, WITHIN).await;
    primary.kill();
    assert_eq!(promote(&a.url).await.0, 200);
    let written = index_of(&must(&a.url, "INSERT INTO t VALUES (5)").await);

    // Restarted with the arguments it was first given (`--role replica --primary <dead>`), the
    // promoted node is still the primary of term 2, at the same index.
    let a = a.stop().start();
    let (status, body, role, term) = pipeline_with_headers(&a.url, &execute("INSERT INTO t VALUES (6)")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(index_of(&body["results"][0]["response"]["result"]), written + 1);
    assert_eq!((role.as_str(), term.as_str()), ("primary", "2"));

    // A second failover: a replica of A is promoted to term 3, and A, restarted, is fenced by it.
    let b = Server::replica(&dir.path().join("b.db"), &a.url);
    wait_index(&b.url, written + 1, WITHIN).await;
    assert_eq!(common::stats(&b.url).await["term"], 2, "a replica takes its primary's term");
    let a_stopped = a.stop();
    let (status, answer) = promote(&b.url).await;
    assert_eq!((status, answer["term"].as_u64()), (200, Some(3)), "{answer}");
    let a = a_stopped.start();
    let stats = common::stats(&a.url).await;
    assert_eq!((stats["role"].as_str(), stats["primary_url"].as_str()), (Some("fenced"), Some(b.url.as_str())));
    let b = b.stop().start();
    let view = common::get(&b.url, "/_devdb/primary").await.1;
    assert_eq!((view["role"].as_str(), view["term"].as_u64()), (Some("primary"), Some(3)), "{view}");
    assert_eq!(view["terms"].as_array().map(Vec::len), Some(3), "{view}");
}
