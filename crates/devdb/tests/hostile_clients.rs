//! Careless and hostile clients (devdb review): a client that gives up on an admin call, a
//! runaway statement whose client is gone, answers larger than sqld sends, statements whose
//! replication sqld would make identical, protocol mistakes sqld refuses, and streams left open.
//! Real devdb processes over HTTP, as in the other suites. Each test names what sqld or the
//! crate README says should happen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, TOKEN, assert_same, dump, index_of, must, wait_index};
use devdb::state::MAX_TERM;
use serde_json::{Value as Json, json};

const WITHIN: Duration = Duration::from_secs(15);

/// A statement that never ends by itself (an unbounded recursive CTE).
const FOREVER: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

/// `POST url+path` that gives up after `timeout`: `None` if it did (or the connection dropped).
async fn post_within(url: &str, path: &str, body: &Json, timeout: Duration) -> Option<(u16, Json)> {
    let resp = common::client()
        .post(format!("{url}{path}"))
        .bearer_auth(TOKEN)
        .json(body)
        .timeout(timeout)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Json::String(text))))
}

fn execute(sql: &str) -> Json {
    json!({"requests": [{"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]})
}

/// A TCP address that accepts connections and never answers (a partitioned peer).
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

/// The admin endpoints stop the node's role task, do their work, and start it again. A client
/// that gives up (a short timeout, Ctrl-C on curl) drops the handler future in between: the
/// replica must still follow its primary afterwards.
#[tokio::test]
async fn a_follow_whose_client_gives_up_leaves_the_replica_replicating() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let replica = Server::replica(&dir.path().join("r.db"), &primary.url);
    let created = must(&primary.url, "CREATE TABLE t(x)").await;
    wait_index(&replica.url, index_of(&created), WITHIN).await;

    // A typo'd primary that never answers; the operator's client gives up first.
    let nowhere = black_hole().await;
    let answer =
        post_within(&replica.url, "/_devdb/follow", &json!({"primary": nowhere}), Duration::from_millis(300)).await;
    assert!(answer.is_none(), "the follow was expected to outlast the client: {answer:?}");

    let written = must(&primary.url, "INSERT INTO t VALUES (1)").await;
    let started = Instant::now();
    loop {
        if common::index(&replica.url).await >= index_of(&written) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica stopped replicating after a follow call its client gave up on (stats: {})",
            common::stats(&replica.url).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/_devdb/log?term=N` fences a primary on the caller's word; a promotion then takes "the
/// highest term any peer knows, plus one". A term no devdb can hold is refused outright, and at
/// the largest term devdb accepts a promotion answers a JSON refusal: neither may overflow and
/// drop the connection with the replica's follower stopped.
#[tokio::test]
async fn a_promotion_next_to_a_node_claiming_the_largest_term_answers() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let replica = Server::replica(&dir.path().join("r.db"), &primary.url);
    let created = must(&primary.url, "CREATE TABLE t(x)").await;
    wait_index(&replica.url, index_of(&created), WITHIN).await;

    let (status, body) = common::get(&primary.url, &format!("/_devdb/log?after=0&term={}", u64::MAX)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("BAD_TERM")), "{body}");
    let (status, body) = common::get(&primary.url, &format!("/_devdb/log?after=0&term={MAX_TERM}")).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("PRIMARY_FENCED")), "{body}");

    let answer = post_within(&replica.url, "/_devdb/promote", &json!({}), Duration::from_secs(30)).await;
    let Some((status, body)) = answer else {
        panic!("promote dropped the connection (the handler panicked: term overflow)");
    };
    assert_eq!((status, body["code"].as_str()), (409, Some("NO_TERM_LEFT")), "{body}");

    // The refused promotion left the replica following its primary.
    assert_eq!(common::stats(&replica.url).await["role"], "replica");
}

/// sqld interrupts a statement whose request was cancelled (a progress handler checks a flag);
/// devdb runs it to the end. A write that never ends then holds SQLite's write lock for ever,
/// and every later writer gets SQLITE_BUSY after the 15 s busy timeout.
#[tokio::test]
async fn a_runaway_write_stops_once_its_client_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    must(&primary.url, "CREATE TABLE t(x)").await;

    let runaway = execute(&format!("INSERT INTO t {FOREVER}"));
    let answer = post_within(&primary.url, "/v3/pipeline", &runaway, Duration::from_secs(1)).await;
    assert!(answer.is_none(), "the runaway statement ended: {answer:?}");

    let result = common::exec(&primary.url, "INSERT INTO t VALUES ('after')", json!([])).await;
    assert!(result.is_ok(), "a writer after the runaway one's client left: {result:?}");
}

/// SIGTERM stops the server gracefully (README); a statement still running on a blocking thread
/// must not keep the process alive for ever.
#[tokio::test]
async fn sigterm_stops_a_server_with_a_statement_still_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Server::primary(&dir.path().join("p.db"));
    let answer = post_within(&primary.url, "/v3/pipeline", &execute(FOREVER), Duration::from_millis(500)).await;
    assert!(answer.is_none(), "the runaway statement ended: {answer:?}");

    let sent = Command::new("kill").args(["-TERM", &primary.pid().to_string()]).status().unwrap();
    assert!(sent.success());
    assert!(primary.exits_within(Duration::from_secs(5)), "devdb still runs 5 s after SIGTERM");
}

/// SIGTERM stops the server gracefully (README), which waited for every connection to finish its
/// exchange: a client that sent half a request, or does not read its answer, kept devdb running
/// for as long as it held the connection. Now such connections are dropped a few seconds after
/// the signal.
#[tokio::test]
async fn sigterm_stops_a_server_whose_clients_hold_their_connections() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Server::primary(&dir.path().join("p.db"));
    let addr = primary.url.trim_start_matches("http://").to_owned();
    // Headers promising a body that never comes.
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v3/pipeline HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{"
    );
    half.write_all(head.as_bytes()).await.unwrap();
    // An answer larger than the sockets buffer, never read.
    let unread = common::client()
        .post(format!("{}/v3/pipeline", primary.url))
        .bearer_auth(TOKEN)
        .json(&execute("SELECT randomblob(9000000)"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sent = Command::new("kill").args(["-TERM", &primary.pid().to_string()]).status().unwrap();
    assert!(sent.success());
    assert!(primary.exits_within(Duration::from_secs(10)), "devdb still runs 10 s after SIGTERM");
    drop((half, unread));
}

/// sqld refuses a statement whose rows exceed its response limit (10 MB by default) with
/// `RESPONSE_TOO_LARGE`; devdb builds any answer in memory, so a query that works against devdb
/// fails against Turso, and a careless one can take all the machine's memory.
#[tokio::test]
async fn an_answer_over_sqlds_response_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let big = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 24) \
               SELECT randomblob(1000000) FROM c";
    let (status, body) = common::post(&primary.url, "/v3/pipeline", &execute(big)).await;
    assert_eq!(status, 200);
    let result = &body["results"][0];
    assert_eq!(
        (result["type"].as_str(), result["error"]["code"].as_str()),
        (Some("error"), Some("RESPONSE_TOO_LARGE")),
        "24 MB of rows were answered ({} bytes of JSON)",
        body.to_string().len()
    );
}

/// README: "Because changesets carry the resulting row values, random(), datetime('now'),
/// randomblob() ... come out identical on replicas". `CREATE TABLE ... AS SELECT` is logged as
/// its SQL only (empty changeset), so the replica evaluates it again, and its arguments are
/// inlined with 15 significant digits.
#[tokio::test]
async fn create_table_as_select_gives_replicas_the_primarys_rows() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let replica = Server::replica(&dir.path().join("r.db"), &primary.url);
    let made = common::exec(
        &primary.url,
        "CREATE TABLE minted AS SELECT randomblob(16) AS id, random() AS n, ? AS f",
        json!([{"type": "float", "value": 0.1 + 0.2}]),
    )
    .await
    .unwrap();
    wait_index(&replica.url, index_of(&made), WITHIN).await;
    assert_same(&dump(&primary.url).await, &dump(&replica.url).await);
}

/// sqld checks a batch before running it: a condition naming the step itself or a later one is
/// `BatchCondBadStep`, storing a SQL text under an id in use is `SqlExists`, an unknown `sql_id`
/// or a statement with both or neither of `sql` and `sql_id` are protocol errors too; all fail
/// the HTTP request (400). devdb ran such a batch (the condition read as "did not run"),
/// overwrote the stored text and answered the others as one failed request, so a client mistake
/// passed every test and failed on Turso.
#[tokio::test]
async fn protocol_mistakes_sqld_refuses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let cases = [
        (
            "condition on the step itself",
            json!({"requests": [{"type": "batch", "batch": {"steps": [
                {"stmt": {"sql": "SELECT 1"}, "condition": {"type": "not", "cond": {"type": "ok", "step": 0}}}
            ]}}, {"type": "close"}]}),
        ),
        (
            "condition on a later step",
            json!({"requests": [{"type": "batch", "batch": {"steps": [
                {"stmt": {"sql": "SELECT 1"}},
                {"stmt": {"sql": "SELECT 2"}, "condition": {"type": "error", "step": 7}}
            ]}}, {"type": "close"}]}),
        ),
        (
            "store_sql under an id in use",
            json!({"requests": [
                {"type": "store_sql", "sql_id": 1, "sql": "SELECT 1"},
                {"type": "store_sql", "sql_id": 1, "sql": "SELECT 2"},
                {"type": "close"}
            ]}),
        ),
    ];
    let one = |stmt: Json| json!({"requests": [{"type": "execute", "stmt": stmt}, {"type": "close"}]});
    let more = [
        ("unknown sql_id", one(json!({"sql_id": 9}))),
        ("both sql and sql_id", one(json!({"sql": "SELECT 1", "sql_id": 9}))),
        ("neither sql nor sql_id", one(json!({}))),
        (
            "unknown sql_id in a later batch step",
            json!({"requests": [{"type": "batch", "batch": {"steps": [
                {"stmt": {"sql": "INSERT INTO t VALUES ('ran')"}}, {"stmt": {"sql_id": 9}}
            ]}}, {"type": "close"}]}),
        ),
        ("describe of an unknown sql_id", json!({"requests": [{"type": "describe", "sql_id": 9}]})),
        ("sequence of an unknown sql_id", json!({"requests": [{"type": "sequence", "sql_id": 9}]})),
    ];
    must(&primary.url, "CREATE TABLE t(x)").await;
    for (what, body) in cases.into_iter().chain(more) {
        let (status, answer) = common::post(&primary.url, "/v3/pipeline", &body).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some("HRANA_PROTO_ERROR")), "{what}: {answer}");
    }
    let rows = common::exec(&primary.url, "SELECT count(*) FROM t", json!([])).await.unwrap();
    assert_eq!(rows["rows"][0][0]["value"], "0", "a batch refused as a whole runs no step");

    // The cursor endpoint checks its batch the same way.
    let cursor = json!({"batch": {"steps": [{"stmt": {"sql": "SELECT 1"}, "condition": {"type": "ok", "step": 0}}]}});
    let (status, answer) = common::post(&primary.url, "/v3/cursor", &cursor).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("HRANA_PROTO_ERROR")), "cursor: {answer}");
}

/// devdb refused new streams once 1,024 were parked (`TOO_MANY_STREAMS`, 503; sqld has no such
/// cap): a client that leaks streams (no `close`) shut out every other client for 10 s, even the
/// worker's `[batch, close]` pipelines, which never park a stream. Now the least recently used
/// idle stream is closed to make room (the spec lets a server close a stream at any time), so
/// the leaking client loses its own oldest stream and the table stays bounded.
#[tokio::test]
async fn a_pipeline_that_closes_its_stream_is_served_while_leaked_streams_fill_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let leak = json!({"requests": [{"type": "execute", "stmt": {"sql": "SELECT 1"}}]});
    let mut first_baton = None;
    for _ in 0..=devdb::streams::MAX_OPEN_STREAMS {
        let (status, body) = common::post(&primary.url, "/v3/pipeline", &leak).await;
        assert_eq!(status, 200, "{body}");
        first_baton.get_or_insert_with(|| body["baton"].as_str().unwrap().to_owned());
    }
    let (status, body) = common::post(&primary.url, "/v3/pipeline", &execute("SELECT 1")).await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(common::stats(&primary.url).await["open_streams"], devdb::streams::MAX_OPEN_STREAMS);
    let oldest = json!({"baton": first_baton, "requests": [{"type": "close"}]});
    let (status, body) = common::post(&primary.url, "/v3/pipeline", &oldest).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("STREAM_EXPIRED")), "{body}");
}

/// sqld bounds the answers of all requests together too (`--max-total-response-size`, 32 MB by
/// default, counted as its 10 MB limit per answer is): a statement whose rows would take that
/// total past it answers `RESPONSE_TOO_LARGE`, however small its own share. devdb bounded each
/// answer only, so clients fetching large answers at once (or reading them slowly) held any
/// number of 10 MB answers in its memory, and code that works against devdb failed on Turso
/// under load. An answer counts until it has been sent (or its client has gone).
#[tokio::test]
async fn answers_in_flight_together_stay_within_sqlds_total_limit() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    // 9.9 MB each as sqld counts (a blob at its raw size), 13.2 MB of base64 on the wire: more
    // than the sockets buffer, so an answer its client does not read stays in flight.
    let big = execute("SELECT randomblob(9900000)");
    let mut held = Vec::new();
    for _ in 0..3 {
        let resp = common::client()
            .post(format!("{}/v3/pipeline", primary.url))
            .bearer_auth(TOKEN)
            .json(&big)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }

    let (status, body) = common::post(&primary.url, "/v3/pipeline", &big).await;
    assert_eq!(status, 200);
    let result = &body["results"][0];
    assert_eq!(
        (result["type"].as_str(), result["error"]["code"].as_str()),
        (Some("error"), Some("RESPONSE_TOO_LARGE")),
        "a fourth 9.9 MB answer while three are in flight (sqld's total is 32 MB): {}",
        body.to_string().chars().take(300).collect::<String>()
    );
    let cursor = json!({"batch": {"steps": [{"stmt": {"sql": "SELECT randomblob(9900000)"}}]}});
    let resp = common::client()
        .post(format!("{}/v3/cursor", primary.url))
        .bearer_auth(TOKEN)
        .json(&cursor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let last: Json = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "RESPONSE_TOO_LARGE", "the cursor's answer counts too");
    // What is left of the total still serves small answers.
    must(&primary.url, "SELECT 1").await;

    // Answers read to the end, or whose client went away, give their share back.
    let first = held.pop().unwrap();
    assert!(first.bytes().await.unwrap().len() > 13_000_000);
    drop(held);
    let started = Instant::now();
    loop {
        let (_, body) = common::post(&primary.url, "/v3/pipeline", &big).await;
        if body["results"][0]["type"] == "ok" {
            break;
        }
        assert!(started.elapsed() < WITHIN, "the total never came back: {}", body["results"][0]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
