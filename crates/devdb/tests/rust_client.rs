//! Conformance of the official `libsql` Rust client (remote, Hrana over HTTP) against devdb.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Server, TOKEN};
use libsql::{Value, named_params, params};
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
