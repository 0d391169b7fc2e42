//! Replication: row-level changesets from primary to replica, restarts, faults, accounting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, checksum, dump, exec, index, index_of, must, wait_index};
use serde_json::json;

const SCHEMA: &[&str] = &[
    "CREATE TABLE nopk(a, b)",
    "CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)",
    "CREATE TABLE wr(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID",
    "CREATE TABLE nd(id INTEGER PRIMARY KEY, r INTEGER DEFAULT (random()), ts TEXT DEFAULT (datetime('now')), u TEXT)",
    "CREATE INDEX nopk_a ON nopk(a)",
    "CREATE TABLE audit(n INTEGER)",
    "CREATE TRIGGER auto_audit AFTER INSERT ON auto BEGIN INSERT INTO audit VALUES (new.id); END",
];

/// 1,000 writes of every kind: inserts, updates, deletes, non-deterministic values.
async fn write_mix(url: &str, from: usize, n: usize) {
    for i in from..from + n {
        let sql = match i % 8 {
            0 => "INSERT INTO nopk VALUES (?, randomblob(8))",
            1 => "INSERT INTO auto(v) VALUES (?)",
            2 => "INSERT INTO wr VALUES ('k' || ?, randomblob(4)) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            3 => "INSERT INTO nd(u) VALUES (?)",
            4 => "UPDATE nopk SET b = random() WHERE a % 3 = ? % 3",
            5 => "DELETE FROM auto WHERE id % 5 = ? % 5 AND id < (SELECT max(id) FROM auto)",
            6 => "UPDATE nd SET r = random(), ts = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id % 7 = ? % 7",
            _ => "INSERT INTO nopk VALUES (? * 1.5, 'x')",
        };
        exec(url, sql, json!([{"type": "integer", "value": i.to_string()}]))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test]
async fn replica_converges_to_identical_content() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let replica = Server::replica(&dir.path().join("r.db"), &primary.url);
    for sql in SCHEMA {
        must(&primary.url, sql).await;
    }
    write_mix(&primary.url, 0, 1000).await;
    // A whole-table delete (SQLite's truncate optimization must not hide it) in a transaction
    // that also writes, plus a rolled-back one that must not replicate.
    let (_, body) = common::post(
        &primary.url,
        "/v3/pipeline",
        &json!({"requests": [
            {"type": "execute", "stmt": {"sql": "BEGIN"}},
            {"type": "execute", "stmt": {"sql": "DELETE FROM audit"}},
            {"type": "execute", "stmt": {"sql": "INSERT INTO audit VALUES (random())"}},
            {"type": "execute", "stmt": {"sql": "COMMIT"}},
            {"type": "execute", "stmt": {"sql": "BEGIN"}},
            {"type": "execute", "stmt": {"sql": "DELETE FROM nd"}},
            {"type": "execute", "stmt": {"sql": "ROLLBACK"}},
            {"type": "close"}
        ]}),
    )
    .await;
    assert!(body["results"].as_array().unwrap().iter().all(|r| r["type"] == "ok"), "{body}");
    let last = index_of(&must(&primary.url, "ALTER TABLE nd ADD COLUMN extra TEXT DEFAULT 'x'").await);

    let took = wait_index(&replica.url, last, Duration::from_secs(30)).await;
    eprintln!("replica converged {took:?} after the last write (index {last})");
    let (p, r) = (dump(&primary.url).await, dump(&replica.url).await);
    common::assert_same(&p, &r);
    assert_eq!(checksum(&p), checksum(&r));
    // The non-deterministic rows really are non-trivial and identical.
    let nd = must(&replica.url, "SELECT count(DISTINCT r), count(*) FROM nd").await;
    assert!(nd["rows"][0][0]["value"].as_str().unwrap().parse::<u64>().unwrap() > 50);
    let seq = must(&replica.url, "SELECT seq FROM sqlite_sequence WHERE name = 'auto'").await;
    assert_eq!(seq["rows"][0][0]["value"], "125");

    // A replica started from nothing after the fact catches up from the whole log.
    let late = Server::replica(&dir.path().join("late.db"), &primary.url);
    wait_index(&late.url, last, Duration::from_secs(30)).await;
    common::assert_same(&dump(&late.url).await, &p);
}

#[tokio::test]
async fn killed_replica_and_killed_primary_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pdb = dir.path().join("p.db");
    let rdb = dir.path().join("r.db");
    let primary = Server::primary(&pdb);
    let replica = Server::replica(&rdb, &primary.url);
    for sql in SCHEMA {
        must(&primary.url, sql).await;
    }
    // Kill the replica while writes stream in, write more while it is down, restart it.
    let url = primary.url.clone();
    let writer = tokio::spawn(async move { write_mix(&url, 0, 400).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before_kill = index(&replica.url).await;
    replica.kill();
    writer.await.unwrap();
    write_mix(&primary.url, 400, 100).await;
    let replica = Server::replica(&rdb, &primary.url);
    let resumed_at = index(&replica.url).await;
    assert!(resumed_at >= before_kill, "replica resumed from its persisted index");
    let last = index(&primary.url).await;
    wait_index(&replica.url, last, Duration::from_secs(30)).await;
    common::assert_same(&dump(&primary.url).await, &dump(&replica.url).await);

    // kill -9 the primary: every acknowledged write survives, and the index carries on.
    let mut acked = Vec::new();
    for i in 0..50 {
        let r = must(&primary.url, &format!("INSERT INTO auto(v) VALUES ('durable-{i}')")).await;
        acked.push(r["last_insert_rowid"].as_str().unwrap().to_owned());
    }
    let index_before = index(&primary.url).await;
    let primary_url = primary.url.clone();
    primary.kill();
    let primary = common::spawn(&[
        "serve",
        "--role",
        "primary",
        "--db",
        pdb.to_str().unwrap(),
        "--listen",
        primary_url.trim_start_matches("http://"),
        "--token",
        common::TOKEN,
    ]);
    assert_eq!(index(&primary.url).await, index_before);
    let n = must(&primary.url, "SELECT count(*) FROM auto WHERE v LIKE 'durable-%'").await;
    assert_eq!(n["rows"][0][0]["value"], "50");
    // The replica (same primary URL) reconnects by itself and keeps following.
    let r = must(&primary.url, "INSERT INTO auto(v) VALUES ('after-restart')").await;
    wait_index(&replica.url, index_of(&r), Duration::from_secs(30)).await;
    common::assert_same(&dump(&primary.url).await, &dump(&replica.url).await);
}

#[tokio::test]
async fn replica_refuses_writes_and_obeys_faults() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let replica = Server::replica(&dir.path().join("r.db"), &primary.url);
    let r = must(&primary.url, "CREATE TABLE t(x)").await;
    wait_index(&replica.url, index_of(&r), Duration::from_secs(10)).await;

    // Writes on a replica are refused with a Hrana error naming the primary.
    let err = exec(&replica.url, "INSERT INTO t VALUES (1)", json!([])).await.unwrap_err();
    assert_eq!(err["code"], "SQLITE_READONLY");
    assert!(err["message"].as_str().unwrap().contains(&primary.url), "{err}");
    let err = exec(&replica.url, "BEGIN IMMEDIATE", json!([])).await.unwrap_err();
    assert_eq!(err["code"], "SQLITE_READONLY");
    // Reads carry the replica's applied index.
    let read = must(&replica.url, "SELECT count(*) FROM t").await;
    assert_eq!(index_of(&read), index_of(&r));

    // Lag: a write becomes visible on the replica only after lag_ms.
    let (s, f) = common::post(&replica.url, "/_devdb/faults", &json!({"lag_ms": 400})).await;
    assert_eq!((s, f["lag_ms"].as_u64()), (200, Some(400)));
    let w = must(&primary.url, "INSERT INTO t VALUES (random())").await;
    let started = Instant::now();
    wait_index(&replica.url, index_of(&w), Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_millis(350), "{:?}", started.elapsed());

    // Read-your-writes: a statement carrying the write's replication_index waits for it.
    let w = must(&primary.url, "INSERT INTO t VALUES ('mine')").await;
    let (status, body) = common::post(
        &replica.url,
        "/v2/pipeline",
        &json!({"requests": [{"type": "execute", "stmt": {
            "sql": "SELECT count(*) FROM t WHERE x = 'mine'",
            "replication_index": index_of(&w).to_string()
        }}, {"type": "close"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let result = &body["results"][0]["response"]["result"];
    assert_eq!(result["rows"][0][0]["value"], "1");
    assert!(index_of(result) >= index_of(&w));
    common::post(&replica.url, "/_devdb/faults", &json!({"lag_ms": 0})).await;

    // Latency is added to every Hrana request.
    common::post(&replica.url, "/_devdb/faults", &json!({"latency_ms": 200})).await;
    let started = Instant::now();
    must(&replica.url, "SELECT 1").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Failing requests answer 503 JSON; control endpoints keep working.
    common::post(&replica.url, "/_devdb/faults", &json!({"latency_ms": 0, "fail_requests": true})).await;
    let (status, body) = common::post(
        &replica.url,
        "/v2/pipeline",
        &json!({"requests": [{"type": "execute", "stmt": {"sql": "SELECT 1"}}]}),
    )
    .await;
    assert_eq!(status, 503);
    assert!(body["message"].is_string());
    let (_, faults) = common::get(&replica.url, "/_devdb/faults").await;
    assert_eq!(faults, json!({"latency_ms": 0, "lag_ms": 0, "fail_requests": true}));
    common::post(&replica.url, "/_devdb/faults", &json!({"fail_requests": false})).await;
    must(&replica.url, "SELECT 1").await;

    // Accounting counts Hrana requests, not control calls.
    let before = common::stats(&primary.url).await;
    let _ = common::stats(&primary.url).await;
    must(&primary.url, "SELECT 1").await;
    let (_, _) = common::post(
        &primary.url,
        "/v3/cursor",
        &json!({"batch": {"steps": [{"stmt": {"sql": "SELECT 1"}}, {"stmt": {"sql": "SELECT 2"}}]}}),
    )
    .await;
    let after = common::stats(&primary.url).await;
    assert_eq!(after["pipelines"].as_u64().unwrap() - before["pipelines"].as_u64().unwrap(), 1);
    assert_eq!(after["cursors"].as_u64().unwrap() - before["cursors"].as_u64().unwrap(), 1);
    assert_eq!(after["statements"].as_u64().unwrap() - before["statements"].as_u64().unwrap(), 3);
    assert_eq!(after["role"], "primary");
    assert_eq!(common::stats(&replica.url).await["role"], "replica");

    // Without the token: 401 everywhere but health/version.
    let resp = common::client().get(format!("{}/_devdb/stats", primary.url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = common::client().get(format!("{}/health", primary.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
