//! Connection state belongs to one Hrana stream, on every endpoint (`/v2/pipeline`,
//! `/v3/pipeline`, `/v3/cursor`), on a primary and a replica: a stream keeps its last insert
//! rowid, `changes()`, `total_changes()`, open transaction, temp tables and PRAGMAs across its
//! requests, and a new stream starts with none of another stream's, as with sqld.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Server, post};
use serde_json::{Value as Json, json};

fn execute(sql: &str) -> Json {
    json!({"type": "execute", "stmt": {"sql": sql}})
}

/// One pipeline request; returns the new baton and the results, each an `Ok` result or `Err`.
async fn pipeline(url: &str, path: &str, baton: Option<&str>, requests: Vec<Json>) -> (Option<String>, Vec<Json>) {
    let (status, body) = post(url, path, &json!({"baton": baton, "requests": requests})).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap().to_vec();
    (body["baton"].as_str().map(str::to_owned), results)
}

fn result(r: &Json) -> &Json {
    assert_eq!(r["type"], "ok", "{r}");
    &r["response"]["result"]
}

/// One `/v3/cursor` request over `sqls`; returns the new baton and the entries.
async fn cursor(url: &str, baton: Option<&str>, sqls: &[&str]) -> (Option<String>, Vec<Json>) {
    let steps: Vec<Json> = sqls.iter().map(|sql| json!({"stmt": {"sql": sql}})).collect();
    let resp = common::client()
        .post(format!("{url}/v3/cursor"))
        .bearer_auth(common::TOKEN)
        .json(&json!({"baton": baton, "batch": {"steps": steps}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut lines = text.lines().map(|l| serde_json::from_str::<Json>(l).unwrap());
    let head = lines.next().unwrap();
    (head["baton"].as_str().map(str::to_owned), lines.collect())
}

/// What a fresh stream must see: no rowid on a query, zero counters, SQLite's default cache
/// size, no temp tables.
const PROBE: &str = "SELECT last_insert_rowid(), changes(), total_changes(), \
                     (SELECT cache_size FROM pragma_cache_size), (SELECT count(*) FROM temp.sqlite_master)";
const FRESH: [&str; 5] = ["0", "0", "0", "-2000", "0"];

fn ints(row: &Json) -> Vec<String> {
    row.as_array().unwrap().iter().map(|v| v["value"].as_str().unwrap_or("?").to_owned()).collect()
}

/// Leaves state on a stream and closes it; `writes` adds an insert of three rows and a temp table.
async fn leave_state_and_close(url: &str, writes: bool) {
    let mut requests = vec![execute("PRAGMA cache_size = 1234")];
    if writes {
        requests.extend([
            // Explicit rowids, so that every round leaves the same rowid behind.
            execute("REPLACE INTO r1(rowid, a) VALUES (1, 1), (2, 2), (3, 3)"),
            execute("CREATE TEMP TABLE scratch(x)"),
        ]);
    }
    requests.push(execute(PROBE));
    requests.push(json!({"type": "close"}));
    let (baton, results) = pipeline(url, "/v2/pipeline", None, requests).await;
    assert_eq!(baton, None);
    let probe = &results[results.len() - 2];
    let expected = if writes { vec!["3", "3", "3", "1234", "1"] } else { vec!["0", "0", "0", "1234", "0"] };
    assert_eq!(ints(&result(probe)["rows"][0]), expected, "the stream sees its own state");
}

async fn a_new_stream_sees_nothing_of_a_closed_one(url: &str, writes: bool) {
    for path in ["/v2/pipeline", "/v3/pipeline"] {
        leave_state_and_close(url, writes).await;
        let (_, results) =
            pipeline(url, path, None, vec![execute("SELECT 1 AS a"), execute(PROBE), json!({"type": "close"})]).await;
        assert_eq!(result(&results[0])["last_insert_rowid"], Json::Null, "{path}: no rowid for a query");
        assert_eq!(ints(&result(&results[1])["rows"][0]), FRESH, "{path}");
    }
    leave_state_and_close(url, writes).await;
    let (_, entries) = cursor(url, None, &["SELECT 1 AS a", PROBE]).await;
    let ends: Vec<&Json> = entries.iter().filter(|e| e["type"] == "step_end").collect();
    assert_eq!(ends.len(), 2, "{entries:?}");
    assert_eq!((&ends[0]["last_insert_rowid"], &ends[0]["last_inserted_rowid"]), (&Json::Null, &Json::Null));
    let rows: Vec<&Json> = entries.iter().filter(|e| e["type"] == "row").collect();
    assert_eq!(ints(&rows[1]["row"]), FRESH, "/v3/cursor");
}

#[tokio::test]
async fn a_new_stream_starts_with_none_of_a_closed_streams_state_on_a_primary_and_a_replica() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("primary.db"));
    let replica = Server::replica(&dir.path().join("replica.db"), &primary.url);
    let created = common::must(&primary.url, "CREATE TABLE r1(a)").await;

    a_new_stream_sees_nothing_of_a_closed_one(&primary.url, true).await;

    common::wait_index(&replica.url, common::index_of(&created), Duration::from_secs(10)).await;
    // A replica refuses writes, so only read-only state (a PRAGMA) can be left behind there.
    a_new_stream_sees_nothing_of_a_closed_one(&replica.url, false).await;
}

#[tokio::test]
async fn a_stream_keeps_its_connection_state_across_requests() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("primary.db"));
    common::must(&primary.url, "CREATE TABLE c(a)").await;
    common::must(&primary.url, "INSERT INTO c VALUES (1), (2), (3)").await;

    let (baton, results) = pipeline(
        &primary.url,
        "/v3/pipeline",
        None,
        vec![
            execute("BEGIN"),
            execute("CREATE TEMP TABLE scratch(x)"),
            execute("INSERT INTO scratch VALUES (7)"),
            execute("PRAGMA cache_size = 1234"),
            execute("UPDATE c SET a = a * 10"),
        ],
    )
    .await;
    assert_eq!(result(&results[2])["last_insert_rowid"], "1");
    assert_eq!(result(&results[4])["affected_row_count"], 3);
    assert_eq!(result(&results[4])["last_insert_rowid"], Json::Null, "an UPDATE reports no rowid");

    // Next request, same stream: the UPDATE's count, not devdb's own log insert's.
    let (baton, results) = pipeline(
        &primary.url,
        "/v3/pipeline",
        baton.as_deref(),
        vec![execute(PROBE), json!({"type": "get_autocommit"})],
    )
    .await;
    assert_eq!(ints(&result(&results[0])["rows"][0]), ["1", "3", "4", "1234", "1"]);
    assert_eq!(results[1]["response"]["is_autocommit"], false);

    // And through a cursor on the same stream.
    let (baton, entries) = cursor(&primary.url, baton.as_deref(), &["INSERT INTO c VALUES (4)", PROBE]).await;
    let ends: Vec<&Json> = entries.iter().filter(|e| e["type"] == "step_end").collect();
    assert_eq!((&ends[0]["affected_row_count"], &ends[0]["last_insert_rowid"]), (&json!(1), &json!("4")));
    assert_eq!(ends[0]["last_inserted_rowid"], "4");
    assert_eq!(ends[1]["last_insert_rowid"], Json::Null);
    let row = entries.iter().find(|e| e["type"] == "row").unwrap();
    assert_eq!(ints(&row["row"]), ["4", "1", "5", "1234", "1"]);

    let (_, results) =
        pipeline(&primary.url, "/v3/pipeline", baton.as_deref(), vec![execute("COMMIT"), json!({"type": "close"})])
            .await;
    result(&results[0]);
    let sum = common::must(&primary.url, "SELECT sum(a) FROM c").await;
    assert_eq!(sum["rows"][0][0]["value"], "64");
}
