//! An in-process primary and replicas for host tests of code that speaks Hrana: the same
//! executor, change capture and changeset replication as `devdb serve`, but replication is
//! driven by the caller's clock instead of HTTP long-polls. A test can hold a replica any
//! number of milliseconds behind the primary and run thousands of requests in a second,
//! deterministically, without sockets or a tokio runtime.
//!
//! Failover is modelled as devdb does it (docs/failover.md), on the caller's clock:
//! [`Cluster::promote`] makes a replica the primary at its applied index and a new term, and
//! fences the former primary (503 `PRIMARY_FENCED`): at once, or, after
//! [`Cluster::set_fence_delay`], as late as devdb's watch fences a primary that kept running
//! (≈ 0.4 s), answering meanwhile as the primary of its old term. The other replicas keep serving
//! what they have under their old term until they would have found the new primary
//! ([`REDISCOVER_MS`] later); then a replica whose log is a prefix of the new history follows
//! it, and one that applied entries the new primary never had stops (503 `REPLICA_DIVERGED`).
//! Entries the promoted replica had not applied are gone from the history, as they are in devdb.
//!
//! Each pipeline runs on a fresh stream (a new connection), as `POST /v3/pipeline` without a
//! baton does on the server; batons are refused, because a simulated cluster keeps no streams.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::db::{self, LogEntry};
use crate::errors::{HRANA_PROTO_ERROR, PRIMARY_FENCED, ProtocolError, fenced_message};
use crate::exec::Session;
use crate::proto::{Error, PipelineReqBody, PipelineRespBody, StreamRequest, StreamResponse, StreamResult};
use crate::state::{Faults, NodeState, Role, Shared, TermStart};

/// How long after a promotion the other replicas follow the new primary (or find that they
/// cannot): devdb's replicas look for a new primary once theirs has failed for 1 s.
pub const REDISCOVER_MS: f64 = 1_000.0;

/// The name [`Cluster`]'s methods take (as `None`) for the node that started as the primary.
const FIRST_PRIMARY: &str = "";

/// Why a simulated server refused a whole request: the HTTP status and message devdb would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    /// devdb's error code: the message's first word (`PRIMARY_FENCED: …`).
    pub fn code(&self) -> &str {
        self.message.split(':').next().unwrap_or_default()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.message)
    }
}

fn refusal(status: u16, message: impl Into<String>) -> Refusal {
    Refusal { status, message: message.into() }
}

struct Node {
    path: PathBuf,
    shared: Shared,
    /// Hrana pipelines this node answered.
    pipelines: u64,
    /// Replication's own connection (the only writer of a replica); on the primary, the reader
    /// of its log. Every node's file holds its log, so a promoted replica's log goes on.
    log_conn: rusqlite::Connection,
    /// Entries wait this long after their commit before this node applies them.
    lag_ms: f64,
    /// Replica: the primary's committed entries land while each pipeline's last statement runs
    /// (see [`Cluster::set_replication_during_reads`]).
    replicates_during_reads: bool,
    /// The connection of the last stream, reset, and whether it was opened read-only: the next
    /// pipeline in the same role takes it. Opening one per pipeline (SQLite reads the schema,
    /// devdb sets its pragmas and hooks) was most of an in-process test's time.
    idle: Option<(bool, Session)>,
}

/// A primary and named replicas, each a SQLite file under one folder.
pub struct Cluster {
    /// By name; the first primary's name is [`FIRST_PRIMARY`].
    nodes: BTreeMap<String, Node>,
    /// The node that takes writes now.
    primary: String,
    /// The current history's committed entries with the time each committed, oldest first.
    log: Vec<(f64, LogEntry)>,
    /// When the last promotion happened.
    promoted_at: f64,
    /// How long after a promotion the former primary learns of it (`set_fence_delay`).
    fence_delay_ms: f64,
    /// A former primary not fenced yet: its name, when the fence reaches it, and the fence.
    pending_fence: Option<(String, f64, Role)>,
}

impl Node {
    fn new(path: PathBuf, node: NodeState, log_conn: rusqlite::Connection) -> Self {
        let shared = Shared::with_node(node, 0, Faults::default());
        Self { path, shared, pipelines: 0, log_conn, lag_ms: 0.0, replicates_during_reads: false, idle: None }
    }

    /// A stream's connection: the idle one if it was opened for this role, else a new one.
    fn open_stream(&mut self) -> Result<(bool, Session), Refusal> {
        let read_only = self.shared.role() != Role::Primary;
        if let Some((idle_read_only, session)) = self.idle.take()
            && idle_read_only == read_only
        {
            return Ok((read_only, session));
        }
        db::open(&self.path, read_only)
            // A simulated cluster outlives no crash: durable commits would only cost fsyncs.
            .and_then(|conn| conn.pragma_update(None, "synchronous", "OFF").map(|()| conn))
            .and_then(|conn| Session::new(conn, !read_only))
            .map(|session| (read_only, session))
            .map_err(|error| refusal(500, error.to_string()))
    }

    /// One stream for the whole pipeline, closed at the end as a baton-less client's is.
    fn run(&mut self, requests: Vec<StreamRequest>) -> Result<Vec<StreamResult>, Refusal> {
        self.pipelines += 1;
        if let Role::Fenced { by_term, primary_url } = self.shared.role() {
            return Err(refusal(503, format!("{PRIMARY_FENCED}: {}", fenced_message(by_term, primary_url.as_deref()))));
        }
        if let Some(why) = self.shared.diverged() {
            return Err(refusal(503, format!("REPLICA_DIVERGED: {why}")));
        }
        let (read_only, mut session) = self.open_stream()?;
        let mut closed = false;
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            if closed {
                let error = Error::new("STREAM_CLOSED", "the stream was closed earlier in this pipeline");
                results.push(StreamResult::Error { error });
                continue;
            }
            closed = matches!(request, StreamRequest::Close {});
            match session.handle(&self.shared, request) {
                Ok(result) => results.push(result),
                Err(ProtocolError(message)) => {
                    // As devdb and sqld: the whole request fails and its stream ends.
                    session.reset(&self.shared);
                    self.idle = Some((read_only, session));
                    return Err(refusal(400, format!("{HRANA_PROTO_ERROR}: {message}")));
                }
            }
        }
        session.reset(&self.shared);
        self.idle = Some((read_only, session));
        Ok(results)
    }

    /// The index after which the history this node follows leaves `terms` (the current
    /// history): where the first term after this node's term began; `None` if it is current.
    fn end_of_own_term(&self, terms: &[TermStart]) -> Option<u64> {
        let term = self.shared.term();
        terms.iter().find(|start| start.term > term).map(|start| start.from_index)
    }
}

fn node_name(name: Option<&str>) -> &str {
    name.unwrap_or(FIRST_PRIMARY)
}

impl Cluster {
    /// A fresh primary in `folder` (which must exist and should be empty) and one replica per
    /// name in `replicas`, all at replication index 0 and term 1.
    pub fn new(folder: &Path, replicas: &[&str]) -> Result<Self, String> {
        let primary_path = folder.join("primary.db");
        let log_reader = db::init(&primary_path).map_err(|e| format!("primary: {e}"))?;
        let first = NodeState::fresh(Role::Primary, "sim".to_string());
        let mut nodes = BTreeMap::new();
        for name in replicas {
            let path = folder.join(format!("replica-{name}.db"));
            let applier = db::init(&path)
                .and_then(|conn| conn.pragma_update(None, "synchronous", "OFF").map(|()| conn))
                .map_err(|e| format!("replica {name}: {e}"))?;
            // As a devdb replica is once it has heard from its primary: its cluster, term, history.
            let state = NodeState { role: Role::Replica { primary_url: "sim://primary".to_string() }, ..first.clone() };
            nodes.insert((*name).to_string(), Node::new(path, state, applier));
        }
        nodes.insert(FIRST_PRIMARY.to_string(), Node::new(primary_path, first, log_reader));
        Ok(Self {
            nodes,
            primary: FIRST_PRIMARY.to_string(),
            log: Vec::new(),
            promoted_at: f64::NEG_INFINITY,
            fence_delay_ms: 0.0,
            pending_fence: None,
        })
    }

    fn node(&self, name: Option<&str>) -> Option<&Node> {
        self.nodes.get(node_name(name))
    }

    /// Applies `dir/*.sql` in order on the primary, each in its own transaction, as
    /// `devdb migrate` does (without its `_migrations` bookkeeping). Replicas receive the schema
    /// through the log like any other change.
    pub fn migrate(&mut self, dir: &Path, now_ms: f64) -> Result<(), String> {
        for migration in crate::migrate::read_dir(dir)? {
            let sql = format!("BEGIN IMMEDIATE;\n{}\n;COMMIT;", migration.sql);
            let request = StreamRequest::Sequence { sql: Some(sql), sql_id: None, replication_index: None };
            let primary = self.nodes.get_mut(&self.primary).ok_or("no primary")?;
            let results = primary.run(vec![request]).map_err(|e| e.to_string())?;
            if let Some(StreamResult::Error { error }) = results.first() {
                return Err(format!("{}: {} ({})", migration.name, error.message, error.code));
            }
            self.collect_log(now_ms)?;
        }
        Ok(())
    }

    /// From `now_ms` on, replica `name` waits `lag_ms` before applying an entry. What was due
    /// under the lag it had is applied first: entries apply when the cluster is next asked, and a
    /// longer lag must not take back what the replica had already. `Err` if there is no such
    /// replica or applying failed.
    pub fn set_lag(&mut self, name: &str, lag_ms: f64, now_ms: f64) -> Result<(), Refusal> {
        if name == FIRST_PRIMARY || !self.nodes.contains_key(name) {
            return Err(refusal(404, format!("no replica {name}")));
        }
        self.catch_up(now_ms)?;
        if let Some(replica) = self.nodes.get_mut(name) {
            replica.lag_ms = lag_ms;
        }
        Ok(())
    }

    /// Replica `name` from now on receives, while it answers each pipeline, every entry the
    /// primary has committed (its lag notwithstanding), at the moment the pipeline's last
    /// statement has read its rows and not yet ended: its rows miss the entries, its index
    /// names them. That is what a sqld replica answers when replication lands mid-read (it
    /// labels an answer with its index once the program has run), drawn at the worst moment;
    /// requests before the last one keep their own index, as they ended before. `None` if
    /// there is no such replica.
    pub fn set_replication_during_reads(&mut self, name: &str, on: bool) -> Option<()> {
        self.nodes.get_mut(name).filter(|_| name != FIRST_PRIMARY).map(|replica| replica.replicates_during_reads = on)
    }

    /// The names of the replicas the cluster started with, in order (a promoted one included).
    pub fn replica_names(&self) -> Vec<String> {
        self.nodes.keys().filter(|name| *name != FIRST_PRIMARY).cloned().collect()
    }

    /// The replication index of the first primary (`None`) or of replica `Some(name)`.
    pub fn index(&self, node: Option<&str>) -> Option<u64> {
        self.node(node).map(|node| node.shared.index())
    }

    /// The term a node reports (devdb's `x-devdb-term`): a primary's own, a replica's
    /// primary's; the first primary is `None`.
    pub fn term(&self, node: Option<&str>) -> Option<u64> {
        self.node(node).map(|node| node.shared.term())
    }

    /// The node that takes writes: `None` for the first primary, else the promoted replica.
    pub fn primary(&self) -> Option<&str> {
        (self.primary != FIRST_PRIMARY).then_some(self.primary.as_str())
    }

    /// The current primary's term and its history, `[{term, from_index}]` (devdb's
    /// `GET /_devdb/primary`).
    pub fn history(&self) -> (u64, Vec<TermStart>) {
        let node = self.nodes.get(&self.primary).map(|node| node.shared.node());
        node.map_or((0, Vec::new()), |node| (node.term, node.terms))
    }

    /// Pipelines answered by the first primary (`None`) or replica `Some(name)`.
    pub fn pipelines(&self, node: Option<&str>) -> u64 {
        self.node(node).map_or(0, |node| node.pipelines)
    }

    /// From now on a promotion fences the former primary `delay_ms` after it, as devdb's watch
    /// fences a primary that kept running (measured 350–390 ms, docs/failover.md) rather than
    /// at once. Until then the former primary answers as before, as the primary of its old
    /// term: its reads show its branch, and a write it takes commits there and reaches no
    /// replica (asynchronous replication without a lease; docs/failover.md, Guarantees).
    pub fn set_fence_delay(&mut self, delay_ms: f64) {
        self.fence_delay_ms = delay_ms.max(0.0);
    }

    /// `devdb promote` on replica `name` at `now_ms`: it becomes the primary at its applied
    /// index and a term above every term so far; the current primary is fenced (after the fence
    /// delay, `set_fence_delay`). Entries the promoted replica had not applied leave the
    /// history. Returns the new term.
    pub fn promote(&mut self, name: &str, now_ms: f64) -> Result<u64, String> {
        self.catch_up(now_ms).map_err(|e| e.to_string())?;
        // A second promotion reaches a former primary still waiting for its fence at once.
        self.apply_fence(f64::INFINITY);
        if name == self.primary || !self.nodes.contains_key(name) || name == FIRST_PRIMARY {
            return Err(format!("`{name}` is not a replica of this cluster"));
        }
        let (old_term, mut terms) = self.history();
        let term = self.nodes.values().map(|node| node.shared.term()).max().unwrap_or(old_term).max(old_term) + 1;
        let promoted = self.nodes.get_mut(name).ok_or("no such replica")?;
        let from_index = promoted.shared.index();
        terms.push(TermStart { term, from_index });
        promoted.shared.update_node(|node| {
            node.role = Role::Primary;
            node.term = term;
            node.terms = terms.clone();
        });
        promoted.shared.set_diverged(None);
        let old = std::mem::replace(&mut self.primary, name.to_string());
        let fence = Role::Fenced { by_term: term, primary_url: Some(format!("sim://{name}")) };
        self.pending_fence = Some((old, now_ms + self.fence_delay_ms, fence));
        self.apply_fence(now_ms);
        self.log.retain(|(_, entry)| entry.idx <= from_index);
        self.promoted_at = now_ms;
        Ok(term)
    }

    /// Fences the former primary if its fence is due by `now_ms`.
    fn apply_fence(&mut self, now_ms: f64) {
        let Some((name, at, fence)) = self.pending_fence.take() else { return };
        if at > now_ms {
            self.pending_fence = Some((name, at, fence));
        } else if let Some(old) = self.nodes.get_mut(&name) {
            old.shared.update_node(|node| node.role = fence);
        }
    }

    /// Answers a `POST /v3/pipeline` body at time `now_ms` on the first primary (`None`) or
    /// replica `Some(name)`: the JSON response body, or the HTTP refusal devdb would send.
    pub fn pipeline(&mut self, node: Option<&str>, body: &[u8], now_ms: f64) -> Result<Vec<u8>, Refusal> {
        self.catch_up(now_ms)?;
        let request: PipelineReqBody = serde_json::from_slice(body)
            .map_err(|e| refusal(400, format!("{HRANA_PROTO_ERROR}: invalid request body: {e}")))?;
        if request.baton.is_some() {
            return Err(refusal(400, "STREAM_EXPIRED: a simulated cluster keeps no streams"));
        }
        let name = node_name(node).to_string();
        let target = self.nodes.get_mut(&name).ok_or_else(|| refusal(404, format!("no node {name}")))?;
        let mut results = target.run(request.requests)?;
        if name == self.primary {
            self.collect_log(now_ms).map_err(|e| refusal(500, e))?;
        } else if target.replicates_during_reads {
            let lag = std::mem::replace(&mut target.lag_ms, f64::NEG_INFINITY);
            let caught_up = self.catch_up(now_ms);
            let target = self.nodes.get_mut(&name).ok_or_else(|| refusal(404, format!("no node {name}")))?;
            target.lag_ms = lag;
            caught_up?;
            relabel_last_statement(&mut results, target.shared.index());
        }
        let response = PipelineRespBody { baton: None, base_url: None, results };
        serde_json::to_vec(&response).map_err(|e| refusal(500, e.to_string()))
    }

    /// Applies, on every replica, the entries whose lag has passed by `now_ms`; replicas that
    /// would have found a new primary by then follow it, or stop if they cannot.
    pub fn catch_up(&mut self, now_ms: f64) -> Result<(), Refusal> {
        self.apply_fence(now_ms);
        let (term, terms) = self.history();
        let rediscovered = now_ms >= self.promoted_at + REDISCOVER_MS;
        for (name, replica) in &mut self.nodes {
            if *name == self.primary || replica.shared.diverged().is_some() {
                continue;
            }
            if !matches!(replica.shared.role(), Role::Replica { .. }) {
                continue;
            }
            let applied = replica.shared.index();
            // Until it re-points, a replica of an older term can take only the entries its own
            // history shares with the current one.
            let mut shared_until = replica.end_of_own_term(&terms);
            if rediscovered && let Some(end) = shared_until {
                if applied > end {
                    let lost = applied - end;
                    let why = format!(
                        "this history moved to term {term} at index {end}, so the {lost} entries after it were never part of it"
                    );
                    replica.shared.set_diverged(Some(why));
                    continue;
                }
                let (terms, primary_url) = (terms.clone(), format!("sim://{}", self.primary));
                replica.shared.update_node(|node| {
                    node.term = term;
                    node.terms = terms;
                    node.role = Role::Replica { primary_url };
                });
                shared_until = None;
            }
            // The log is in index order: start after what this replica has, stop at the first
            // entry still inside its lag (entries apply in order).
            let start = self.log.partition_point(|(_, entry)| entry.idx <= applied);
            let contiguous: Vec<LogEntry> = self.log[start..]
                .iter()
                .take_while(|(committed, entry)| {
                    committed + replica.lag_ms <= now_ms && shared_until.is_none_or(|end| entry.idx <= end)
                })
                .map(|(_, entry)| entry.clone())
                .collect();
            if contiguous.is_empty() {
                continue;
            }
            let index = db::apply_entries(&replica.log_conn, &contiguous)
                .map_err(|e| refusal(500, format!("replica {name}: applying the log failed: {e}")))?;
            replica.shared.advance_index(index);
        }
        Ok(())
    }

    /// Stamps entries the primary committed since the last call with `now_ms`.
    fn collect_log(&mut self, now_ms: f64) -> Result<(), String> {
        let after = self.log.last().map_or(0, |(_, entry)| entry.idx);
        let primary = self.nodes.get(&self.primary).ok_or("no primary")?;
        let entries = db::read_log(&primary.log_conn, after, u32::MAX).map_err(|e| e.to_string())?;
        if let Some(last) = entries.last() {
            primary.shared.advance_index(last.idx);
        }
        self.log.extend(entries.into_iter().map(|entry| (now_ms, entry)));
        Ok(())
    }
}

/// Gives the last execute or batch answer among `results` the index `index`, as the moment it
/// ended would have.
fn relabel_last_statement(results: &mut [StreamResult], index: u64) {
    for result in results.iter_mut().rev() {
        match result {
            StreamResult::Ok { response: StreamResponse::Execute { result } } => {
                result.replication_index = Some(index);
                return;
            }
            StreamResult::Ok { response: StreamResponse::Batch { result } } => {
                result.replication_index = Some(index);
                for step in result.step_results.iter_mut().flatten() {
                    step.replication_index = Some(index);
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute(sql: &str) -> Vec<u8> {
        let body = serde_json::json!({
            "requests": [{"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]
        });
        serde_json::to_vec(&body).unwrap()
    }

    fn rows(answer: &[u8]) -> serde_json::Value {
        let body: serde_json::Value = serde_json::from_slice(answer).unwrap();
        body["results"][0]["response"]["result"]["rows"].clone()
    }

    #[test]
    fn a_replica_applies_a_write_only_after_its_lag() {
        let folder = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(folder.path(), &["eu"]).unwrap();
        cluster.set_lag("eu", 1_000.0, 0.0).unwrap();
        cluster.pipeline(None, &execute("CREATE TABLE t(x)"), 0.0).unwrap();
        cluster.pipeline(None, &execute("INSERT INTO t VALUES (7)"), 0.0).unwrap();
        assert_eq!(cluster.index(None), Some(2));

        let early =
            cluster.pipeline(Some("eu"), &execute("SELECT name FROM sqlite_master WHERE name = 't'"), 999.0).unwrap();
        assert_eq!(rows(&early), serde_json::json!([]), "the schema has not arrived yet");
        assert_eq!(cluster.index(Some("eu")), Some(0));

        let late = cluster.pipeline(Some("eu"), &execute("SELECT x FROM t"), 1_000.0).unwrap();
        assert_eq!(rows(&late), serde_json::json!([[{"type": "integer", "value": "7"}]]));
        assert_eq!(cluster.index(Some("eu")), Some(2));
        assert_eq!((cluster.pipelines(None), cluster.pipelines(Some("eu"))), (2, 2));
    }

    /// A lag is the delay before an entry applies, so a longer lag from now on holds back what
    /// commits from now on, never what was due already. Entries are applied when the cluster is
    /// next asked; before, raising the lag of a replica nobody had read took back writes it had
    /// had for a while (a random consistency run read a note the author had unpublished before
    /// the lag went up, and blamed the cache).
    #[test]
    fn a_longer_lag_does_not_take_back_what_was_due_under_the_shorter_one() {
        let folder = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(folder.path(), &["eu"]).unwrap();
        cluster.pipeline(None, &execute("CREATE TABLE t(x)"), 0.0).unwrap();
        cluster.pipeline(None, &execute("INSERT INTO t VALUES (7)"), 100.0).unwrap();

        cluster.set_lag("eu", 3_000.0, 500.0).unwrap();
        let read = cluster.pipeline(Some("eu"), &execute("SELECT x FROM t"), 600.0).unwrap();
        assert_eq!(rows(&read), serde_json::json!([[{"type": "integer", "value": "7"}]]));

        cluster.pipeline(None, &execute("INSERT INTO t VALUES (8)"), 700.0).unwrap();
        let held = cluster.pipeline(Some("eu"), &execute("SELECT x FROM t ORDER BY x"), 3_699.0).unwrap();
        assert_eq!(rows(&held), serde_json::json!([[{"type": "integer", "value": "7"}]]), "inside the new lag");
    }

    /// sqld's answer when replication lands mid-read, drawn at its worst: the last statement's
    /// rows miss the entries its index names; a statement that ended before keeps its index.
    #[test]
    fn replication_during_a_read_is_named_by_the_last_statements_index_only() {
        let folder = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(folder.path(), &["eu"]).unwrap();
        cluster.pipeline(None, &execute("CREATE TABLE t(x)"), 0.0).unwrap();
        cluster.pipeline(None, &execute("INSERT INTO t VALUES (1)"), 0.0).unwrap();
        cluster.catch_up(0.0).unwrap();
        cluster.set_lag("eu", 60_000.0, 0.0).unwrap();
        cluster.pipeline(None, &execute("UPDATE t SET x = 2"), 1.0).unwrap();
        cluster.set_replication_during_reads("eu", true).unwrap();
        let probe_then_read = serde_json::json!({"requests": [
            {"type": "execute", "stmt": {"sql": "SELECT 1"}},
            {"type": "batch", "batch": {"steps": [{"stmt": {"sql": "SELECT x FROM t"}}]}},
            {"type": "close"},
        ]});
        let answer = cluster.pipeline(Some("eu"), &serde_json::to_vec(&probe_then_read).unwrap(), 2.0).unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        let (probe, read) = (&answer["results"][0]["response"]["result"], &answer["results"][1]["response"]["result"]);
        assert_eq!(probe["replication_index"], "2", "{answer}");
        assert_eq!(read["step_results"][0]["rows"], serde_json::json!([[{"type": "integer", "value": "1"}]]));
        assert_eq!(read["replication_index"], "3", "the index names the update the rows miss: {answer}");
        assert_eq!(cluster.index(Some("eu")), Some(3));
        let after = cluster.pipeline(Some("eu"), &execute("SELECT x FROM t"), 3.0).unwrap();
        assert_eq!(rows(&after), serde_json::json!([[{"type": "integer", "value": "2"}]]));
    }

    /// Each pipeline is a new stream, as a baton-less client's is, though the node keeps its
    /// connection: nothing one pipeline left on it shows in the next.
    #[test]
    fn a_pipeline_sees_a_fresh_stream_on_the_kept_connection() {
        let folder = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(folder.path(), &["eu"]).unwrap();
        cluster.pipeline(None, &execute("CREATE TABLE t(x)"), 0.0).unwrap();
        let open_transaction = serde_json::json!({"requests": [
            {"type": "execute", "stmt": {"sql": "BEGIN"}},
            {"type": "execute", "stmt": {"sql": "INSERT INTO t VALUES (1), (2)"}},
            {"type": "store_sql", "sql_id": 1, "sql": "SELECT 1"},
        ]});
        cluster.pipeline(None, &serde_json::to_vec(&open_transaction).unwrap(), 0.0).unwrap();
        let counters = "SELECT changes(), total_changes(), last_insert_rowid(), (SELECT count(*) FROM t)";
        let zero = serde_json::json!({"type": "integer", "value": "0"});
        assert_eq!(
            rows(&cluster.pipeline(None, &execute(counters), 0.0).unwrap()),
            serde_json::json!([[zero, zero, zero, zero]])
        );
        let stored = serde_json::json!({"requests": [{"type": "execute", "stmt": {"sql_id": 1}}]});
        let refused = cluster.pipeline(None, &serde_json::to_vec(&stored).unwrap(), 0.0).unwrap_err();
        assert_eq!(
            (refused.status, refused.message.as_str()),
            (400, "HRANA_PROTO_ERROR: SQL text 1 not found"),
            "the stored SQL went with its stream"
        );
        cluster.pipeline(None, &execute("INSERT INTO t VALUES (3)"), 0.0).unwrap();
        assert_eq!(rows(&cluster.pipeline(None, &execute(counters), 0.0).unwrap())[0][3]["value"], "1");
    }

    #[test]
    fn replicas_refuse_writes_and_batons() {
        let folder = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(folder.path(), &["eu"]).unwrap();
        let answer = cluster.pipeline(Some("eu"), &execute("CREATE TABLE t(x)"), 0.0).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(body["results"][0]["type"], "error", "{body}");
        let with_baton = br#"{"baton": "b", "requests": []}"#;
        assert_eq!(cluster.pipeline(None, with_baton, 0.0).unwrap_err().status, 400);
    }

    fn write(cluster: &mut Cluster, node: Option<&str>, value: i64, now_ms: f64) -> Result<Vec<u8>, Refusal> {
        cluster.pipeline(node, &execute(&format!("INSERT INTO t VALUES ({value})")), now_ms)
    }

    fn values(cluster: &mut Cluster, node: Option<&str>, now_ms: f64) -> Result<Vec<i64>, Refusal> {
        let answer = cluster.pipeline(node, &execute("SELECT x FROM t ORDER BY x"), now_ms)?;
        let rows = rows(&answer);
        Ok(rows.as_array().unwrap().iter().map(|row| row[0]["value"].as_str().unwrap().parse().unwrap()).collect())
    }

    #[test]
    fn a_promoted_replica_takes_writes_at_a_new_term_and_the_old_primary_is_fenced() {
        let folder = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(folder.path(), &["eu", "ap"]).unwrap();
        cluster.pipeline(None, &execute("CREATE TABLE t(x)"), 0.0).unwrap();
        write(&mut cluster, None, 1, 0.0).unwrap();
        cluster.catch_up(50.0).unwrap();
        cluster.set_lag("eu", 500.0, 50.0).unwrap();
        write(&mut cluster, None, 2, 100.0).unwrap();
        cluster.catch_up(200.0).unwrap();
        assert_eq!((cluster.index(Some("eu")), cluster.index(Some("ap"))), (Some(2), Some(3)));

        let term = cluster.promote("eu", 200.0).unwrap();

        assert_eq!(term, 2);
        assert_eq!(cluster.primary(), Some("eu"));
        assert_eq!(
            cluster.history(),
            (2, vec![TermStart { term: 1, from_index: 0 }, TermStart { term: 2, from_index: 2 }])
        );
        let fenced = write(&mut cluster, None, 3, 300.0).unwrap_err();
        assert_eq!((fenced.status, fenced.code()), (503, "PRIMARY_FENCED"), "{fenced}");
        assert_eq!(cluster.pipeline(None, &execute("SELECT 1"), 300.0).unwrap_err().code(), "PRIMARY_FENCED");
        write(&mut cluster, Some("eu"), 4, 300.0).unwrap();
        assert_eq!(cluster.index(Some("eu")), Some(3), "term 2 goes on from index 2");
        assert_eq!(cluster.term(Some("eu")), Some(2));
        assert_eq!(values(&mut cluster, Some("eu"), 300.0).unwrap(), [1, 4], "write 2 was lost: eu never applied it");
        assert!(cluster.promote("eu", 300.0).is_err(), "already the primary");
    }

    #[test]
    fn with_a_fence_delay_the_old_primary_answers_under_its_old_term_until_the_fence_arrives() {
        let folder = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(folder.path(), &["eu"]).unwrap();
        cluster.pipeline(None, &execute("CREATE TABLE t(x)"), 0.0).unwrap();
        write(&mut cluster, None, 1, 0.0).unwrap();
        cluster.set_fence_delay(400.0);

        assert_eq!(cluster.promote("eu", 100.0).unwrap(), 2);
        write(&mut cluster, Some("eu"), 2, 150.0).unwrap();

        assert_eq!(cluster.term(None), Some(1), "not fenced yet: still the primary of term 1");
        write(&mut cluster, None, 3, 200.0).unwrap();
        assert_eq!(values(&mut cluster, None, 499.0).unwrap(), [1, 3], "its own branch");
        let fenced = cluster.pipeline(None, &execute("SELECT 1"), 500.0).unwrap_err();
        assert_eq!((fenced.status, fenced.code()), (503, "PRIMARY_FENCED"), "{fenced}");
        assert_eq!(values(&mut cluster, Some("eu"), 500.0).unwrap(), [1, 2], "write 3 reached no replica");
        // A second promotion fences a former primary still waiting at once.
        let second_folder = tempfile::tempdir().unwrap();
        let mut second = Cluster::new(second_folder.path(), &["eu", "ap"]).unwrap();
        second.set_fence_delay(400.0);
        second.promote("eu", 0.0).unwrap();
        second.promote("ap", 10.0).unwrap();
        assert_eq!(second.pipeline(None, &execute("SELECT 1"), 20.0).unwrap_err().code(), "PRIMARY_FENCED");
    }

    #[test]
    fn replicas_follow_the_new_primary_after_rediscovery_or_stop_when_ahead_of_it() {
        let folder = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::new(folder.path(), &["eu", "ap", "na"]).unwrap();
        cluster.pipeline(None, &execute("CREATE TABLE t(x)"), 0.0).unwrap();
        cluster.set_lag("eu", 1_000.0, 0.0).unwrap();
        cluster.set_lag("na", 1_000.0, 0.0).unwrap();
        write(&mut cluster, None, 1, 0.0).unwrap();
        write(&mut cluster, None, 2, 500.0).unwrap();
        cluster.catch_up(1_200.0).unwrap();
        // eu and na applied up to index 2 (value 1); ap has everything (index 3).
        assert_eq!(cluster.index(Some("ap")), Some(3));

        cluster.promote("eu", 1_200.0).unwrap();
        write(&mut cluster, Some("eu"), 5, 1_300.0).unwrap();

        // Before it would have found the new primary, ap still serves its old term's data.
        assert_eq!(values(&mut cluster, Some("ap"), 1_400.0).unwrap(), [1, 2]);
        assert_eq!(cluster.term(Some("ap")), Some(1));
        assert_eq!(cluster.term(Some("na")), Some(1), "na has not re-pointed yet either");
        // Then ap, which holds an entry the new history lacks, stops; na follows term 2.
        let stopped = values(&mut cluster, Some("ap"), 1_200.0 + REDISCOVER_MS + 1_000.0).unwrap_err();
        assert_eq!((stopped.status, stopped.code()), (503, "REPLICA_DIVERGED"), "{stopped}");
        assert_eq!(values(&mut cluster, Some("na"), 4_000.0).unwrap(), [1, 5]);
        assert_eq!(cluster.term(Some("na")), Some(2));
        assert_eq!(cluster.index(Some("na")), Some(3));
    }
}
