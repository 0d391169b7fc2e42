//! Conformance of the official `libsql` Rust client (remote, Hrana over HTTP) against devdb.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, TOKEN};
use libsql::{TransactionBehavior, Value, named_params, params};
use serde_json::json;

async fn connect(url: &str) -> libsql::Connection {
    libsql::Builder::new_remote(url.to_owned(), TOKEN.to_owned()).build().await.unwrap().connect().unwrap()
}

async fn all(conn: &libsql::Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut rows = conn.query(sql, ()).await.unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.unwrap() {
        out.push((0..row.column_count()).map(|i| row.get_value(i).unwrap()).collect());
    }
    out
}

#[tokio::test]
async fn rust_client_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::primary(&dir.path().join("db.sqlite"));
    let conn = connect(&server.url).await;

    // All value types, positional parameters, read back byte-exact.
    conn.execute("CREATE TABLE vals(id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, b BLOB, n)", ()).await.unwrap();
    let blob: Vec<u8> = (0..=255u8).collect();
    let text = "héllo \"wörld\"\n\t😀 \\ end";
    for (i, f) in [(i64::MIN, -0.1f64), (i64::MAX, 1e308), (0, 2.5e-300)] {
        conn.execute(
            "INSERT INTO vals(i, f, t, b, n) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![i, f, text, blob.clone(), Value::Null],
        )
        .await
        .unwrap();
    }
    let rows = all(&conn, "SELECT i, f, t, b, n FROM vals ORDER BY id").await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], Value::Integer(i64::MIN));
    assert_eq!(rows[1][0], Value::Integer(i64::MAX));
    assert_eq!(rows[0][1], Value::Real(-0.1));
    assert_eq!(rows[1][1], Value::Real(1e308));
    assert_eq!(rows[2][1], Value::Real(2.5e-300));
    assert_eq!(rows[0][2], Value::Text(text.to_owned()));
    assert_eq!(rows[0][3], Value::Blob(blob.clone()));
    assert_eq!(rows[0][4], Value::Null);

    // Named parameters, with each prefix.
    conn.execute("INSERT INTO vals(i, t) VALUES (:num, @word)", named_params! { ":num": 42, "@word": "named" })
        .await
        .unwrap();
    conn.execute("INSERT INTO vals(i, t) VALUES (?1, ?2)", params![7, "mixed"]).await.unwrap();
    // sqld binds positional arguments to `?`/`?NNN` only, and wants a value for every parameter.
    let err = conn.execute("INSERT INTO vals(i, t) VALUES ($num, ?2)", params![7, "mixed"]).await.unwrap_err();
    assert!(err.to_string().contains("value for parameter $num not found"), "{err}");
    assert!(err.to_string().contains(r#"code: "ARGS_INVALID""#), "{err}");
    let rows = all(&conn, "SELECT i, t FROM vals WHERE i IN (42, 7) ORDER BY i").await;
    assert_eq!(
        rows,
        vec![
            vec![Value::Integer(7), Value::Text("mixed".into())],
            vec![Value::Integer(42), Value::Text("named".into())],
        ]
    );

    // A transactional batch with a failing statement leaves nothing behind.
    conn.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)", ()).await.unwrap();
    let failed = conn
        .execute_transactional_batch(
            "INSERT INTO acct VALUES (1, 100); INSERT INTO acct VALUES (2, NULL); INSERT INTO acct VALUES (3, 5);",
        )
        .await;
    assert!(failed.is_err(), "NOT NULL violation must fail the batch");
    assert!(all(&conn, "SELECT * FROM acct").await.is_empty());

    // Interactive transaction across requests: invisible to others until COMMIT.
    let other = connect(&server.url).await;
    let tx = conn.transaction().await.unwrap();
    tx.execute("INSERT INTO acct VALUES (10, 1)", ()).await.unwrap();
    tx.execute("UPDATE acct SET bal = bal + 1 WHERE id = 10", ()).await.unwrap();
    assert!(!tx.is_autocommit());
    assert!(all(&other, "SELECT * FROM acct").await.is_empty());
    tx.commit().await.unwrap();
    assert_eq!(all(&other, "SELECT bal FROM acct").await, vec![vec![Value::Integer(2)]]);
    let tx = conn.transaction().await.unwrap();
    tx.execute("DELETE FROM acct", ()).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(all(&other, "SELECT count(*) FROM acct").await, vec![vec![Value::Integer(1)]]);

    // A cursor over 10,000 rows.
    conn.execute(
        "CREATE TABLE big AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
         SELECT x, hex(randomblob(16)) AS h FROM c",
        (),
    )
    .await
    .unwrap();
    let mut rows = conn.query("SELECT x, h FROM big ORDER BY x", ()).await.unwrap();
    let mut n = 0i64;
    while let Some(row) = rows.next().await.unwrap() {
        n += 1;
        assert_eq!(row.get::<i64>(0).unwrap(), n);
        assert_eq!(row.get::<String>(1).unwrap().len(), 32);
    }
    assert_eq!(n, 10_000);

    // Errors carry SQLite's message, and the connection keeps working.
    let err = conn.execute("SELEC 1", ()).await.unwrap_err().to_string();
    assert!(err.contains("syntax error"), "{err}");
    let err = conn.execute("INSERT INTO acct VALUES (10, 0)", ()).await.unwrap_err().to_string();
    assert!(err.contains("UNIQUE constraint failed"), "{err}");
    assert_eq!(all(&conn, "SELECT 1").await, vec![vec![Value::Integer(1)]]);
}

#[tokio::test]
async fn unknown_and_expired_batons_are_hrana_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::primary(&dir.path().join("db.sqlite"));
    let (status, body) = common::post(
        &server.url,
        "/v3/pipeline",
        &json!({"baton": "no-such-baton", "requests": [{"type": "get_autocommit"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("baton"), "{body}");
    assert!(body["code"].is_string());

    // Open a transaction, leave the stream idle past its expiry: it is rolled back and its
    // baton is refused.
    common::must(&server.url, "CREATE TABLE t(x)").await;
    let (_, body) = common::post(
        &server.url,
        "/v3/pipeline",
        &json!({"requests": [
            {"type": "execute", "stmt": {"sql": "BEGIN"}},
            {"type": "execute", "stmt": {"sql": "INSERT INTO t VALUES (1)"}},
            {"type": "get_autocommit"}
        ]}),
    )
    .await;
    assert_eq!(body["results"][2]["response"]["is_autocommit"], false);
    let baton = body["baton"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (status, body) = common::post(
        &server.url,
        "/v3/pipeline",
        &json!({"baton": baton, "requests": [{"type": "execute", "stmt": {"sql": "COMMIT"}}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let count = common::must(&server.url, "SELECT count(*) FROM t").await;
    assert_eq!(count["rows"][0][0]["value"], "0");
    // The write lock was released with the expired stream.
    common::must(&server.url, "INSERT INTO t VALUES (2)").await;
}

/// A primary and a replica that has applied everything written so far. Fields drop in order:
/// the replica before its primary, both before their folder.
struct Pair {
    replica: Server,
    primary: Server,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn start(schema: &str) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let primary = Server::primary(&dir.path().join("primary.db"));
        let replica = Server::replica(&dir.path().join("replica.db"), &primary.url);
        connect(&primary.url).await.execute_batch(schema).await.unwrap();
        let index = common::index(&primary.url).await;
        common::wait_index(&replica.url, index, Duration::from_secs(10)).await;
        Pair { replica, primary, _dir: dir }
    }
}

fn ints(values: &[i64]) -> Vec<Vec<Value>> {
    vec![values.iter().map(|&i| Value::Integer(i)).collect()]
}

/// The client shows a Hrana error as `Error { message: "…", code: "…" }`, or from a cursor as
/// `(error code: …) …`.
fn assert_error(err: libsql::Error, code: &str, detail: &str) {
    let text = err.to_string();
    let shown = [format!("code: \"{code}\""), format!("(error code: {code})")];
    assert!(shown.iter().any(|s| text.contains(s.as_str())), "want {code}: {text}");
    assert!(text.contains(detail), "want {detail:?}: {text}");
}

#[tokio::test]
async fn each_stream_has_its_own_rowid_and_counters_on_a_primary_and_a_replica() {
    let pair = Pair::start(
        "CREATE TABLE r1(a); CREATE TABLE parent(id INTEGER PRIMARY KEY); CREATE TABLE child(p REFERENCES parent(id));",
    )
    .await;
    let conn = connect(&pair.primary.url).await;
    assert_eq!(conn.execute("INSERT INTO r1 VALUES (1), (2), (3)", ()).await.unwrap(), 3);
    assert_eq!(conn.last_insert_rowid(), 3);

    // Each new connection is a new stream: it must not see the insert's rowid or counts.
    for url in [&pair.primary.url, &pair.replica.url] {
        let fresh = connect(url).await;
        fresh.execute("SELECT 1", ()).await.unwrap();
        assert_eq!(fresh.last_insert_rowid(), 0, "{url}");
        assert_eq!(all(&fresh, "SELECT last_insert_rowid(), changes(), total_changes()").await, ints(&[0, 0, 0]));
    }

    // Within one stream (a transaction), changes() is the last statement's count.
    let tx = conn.transaction().await.unwrap();
    assert_eq!(tx.execute("UPDATE r1 SET a = a * 10", ()).await.unwrap(), 3);
    assert_eq!(all(&tx, "SELECT changes(), total_changes()").await, ints(&[3, 3]));
    assert_eq!(tx.execute("DELETE FROM r1 WHERE a = 10", ()).await.unwrap(), 1);
    assert_eq!(all(&tx, "SELECT changes(), total_changes()").await, ints(&[1, 4]));
    tx.commit().await.unwrap();

    // A PRAGMA set in one stream does not reach the next one (the client closes the stream
    // after an autocommit batch); devdb's SQLite, like sqld's, enforces foreign keys by default.
    for url in [&pair.primary.url, &pair.replica.url] {
        connect(url).await.execute_batch("PRAGMA foreign_keys = OFF;").await.unwrap();
        assert_eq!(all(&connect(url).await, "PRAGMA foreign_keys").await, ints(&[1]), "{url}");
    }
    // ... and lasts for the rest of its own.
    let unchecked = connect(&pair.primary.url).await;
    unchecked.execute_batch("PRAGMA foreign_keys = OFF; INSERT INTO child VALUES (99);").await.unwrap();
    let err = connect(&pair.primary.url).await.execute("INSERT INTO child VALUES (98)", ()).await.unwrap_err();
    assert_error(err, "SQLITE_CONSTRAINT", "SQLite error: FOREIGN KEY constraint failed");
}

#[tokio::test]
async fn errors_carry_sqlds_codes_on_a_primary_and_a_replica() {
    let pair = Pair::start(
        "CREATE TABLE e(id INTEGER PRIMARY KEY, u TEXT UNIQUE, n INTEGER NOT NULL, c INTEGER CHECK (c > 0));
         INSERT INTO e VALUES (1, 'a', 1, 1);",
    )
    .await;
    let conn = connect(&pair.primary.url).await;
    let table = [
        ("INSERT INTO e VALUES (1, 'b', 1, 1)", "SQLITE_CONSTRAINT", "SQLite error: UNIQUE constraint failed: e.id"),
        ("INSERT INTO e VALUES (2, 'a', 1, 1)", "SQLITE_CONSTRAINT", "SQLite error: UNIQUE constraint failed: e.u"),
        (
            "INSERT INTO e VALUES (3, 'c', NULL, 1)",
            "SQLITE_CONSTRAINT",
            "SQLite error: NOT NULL constraint failed: e.n",
        ),
        ("INSERT INTO e VALUES (4, 'd', 1, 0)", "SQLITE_CONSTRAINT", "SQLite error: CHECK constraint failed: c > 0"),
        ("SELECT nope FROM e", "SQL_INPUT_ERROR", "SQL input error: no such column: nope (at offset 7)"),
        ("COMMIT", "SQLITE_UNKNOWN", "SQLite error: cannot commit - no transaction is active"),
    ];
    for (sql, code, detail) in table {
        assert_error(conn.execute(sql, ()).await.unwrap_err(), code, detail);
    }
    // Inside a transaction, and in a transactional batch.
    let tx = conn.transaction().await.unwrap();
    assert_error(tx.execute(table[1].0, ()).await.unwrap_err(), "SQLITE_CONSTRAINT", "UNIQUE constraint failed: e.u");
    tx.rollback().await.unwrap();
    // Through a cursor (`query`).
    let returning = conn.query("INSERT INTO e VALUES (1, 'b', 1, 1) RETURNING id", ()).await.unwrap_err();
    assert_error(returning, "SQLITE_CONSTRAINT", "SQLite error: UNIQUE constraint failed: e.id");
    // The client keeps only the message of a batch's error.
    let failed =
        conn.execute_transactional_batch("INSERT INTO e VALUES (5, 'e', 1, 1); INSERT INTO e VALUES (5, 'f', 1, 1);");
    let text = failed.await.unwrap_err().to_string();
    assert!(text.contains("SQLite error: UNIQUE constraint failed: e.id"), "{text}");

    let replica = connect(&pair.replica.url).await;
    let refused = replica.execute("INSERT INTO e VALUES (6, 'g', 1, 1)", ()).await.unwrap_err();
    assert_error(refused, "SQLITE_READONLY", "devdb replica is read-only");
    let missing = replica.execute("SELECT nope FROM e", ()).await.unwrap_err();
    assert_error(missing, "SQL_INPUT_ERROR", "no such column: nope");
    assert_eq!(all(&replica, "SELECT count(*) FROM e").await, ints(&[1]));
}

#[tokio::test]
async fn a_writer_queued_behind_an_abandoned_transaction_gets_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("db.sqlite"));
    let holder = connect(&primary.url).await;
    holder.execute("CREATE TABLE q(a)", ()).await.unwrap();
    let tx = holder.transaction_with_behavior(TransactionBehavior::Immediate).await.unwrap();
    tx.execute("INSERT INTO q VALUES (1)", ()).await.unwrap();
    // The client vanishes mid-transaction: no COMMIT, no ROLLBACK, no close (dropping the
    // transaction would send a ROLLBACK).
    std::mem::forget(tx);

    let writer = connect(&primary.url).await;
    let started = Instant::now();
    writer.execute("INSERT INTO q VALUES (2)", ()).await.unwrap();
    let waited = started.elapsed();
    assert!(waited > Duration::from_secs(5), "the write should have queued behind the lock, waited {waited:?}");
    assert_eq!(all(&writer, "SELECT a FROM q").await, ints(&[2]), "the abandoned insert was rolled back");
}
