//! An in-process primary and replicas for host tests of code that speaks Hrana: the same
//! executor, change capture and changeset replication as `devdb serve`, but replication is
//! driven by the caller's clock instead of HTTP long-polls. A test can hold a replica any
//! number of milliseconds behind the primary and run thousands of requests in a second,
//! deterministically, without sockets or a tokio runtime.
//!
//! Each pipeline runs on a fresh stream (a new connection), as `POST /v3/pipeline` without a
//! baton does on the server; batons are refused, because a simulated cluster keeps no streams.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::db::{self, LogEntry};
use crate::exec::Session;
use crate::proto::{Error, PipelineReqBody, PipelineRespBody, StreamRequest, StreamResult};
use crate::state::{Faults, Role, Shared};

/// Why a simulated server refused a whole request: the HTTP status and message devdb would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
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
}

struct Replica {
    node: Node,
    /// Replication's own connection: the only writer of a replica.
    applier: rusqlite::Connection,
    /// Entries wait this long after their commit before this replica applies them.
    lag_ms: f64,
}

/// A primary and named replicas, each a SQLite file under one folder.
pub struct Cluster {
    primary: Node,
    replicas: BTreeMap<String, Replica>,
    /// Every committed log entry with the time it committed, oldest first.
    log: Vec<(f64, LogEntry)>,
    /// Reads the primary's log after each pipeline.
    log_reader: rusqlite::Connection,
}

impl Node {
    fn new(path: PathBuf, role: Role, index: u64) -> Self {
        Self { path, shared: Shared::new(role, index, Faults::default()), pipelines: 0 }
    }

    fn open_stream(&self) -> Result<Session, Refusal> {
        let read_only = self.shared.role() != Role::Primary;
        db::open(&self.path, read_only)
            // A simulated cluster outlives no crash: durable commits would only cost fsyncs.
            .and_then(|conn| conn.pragma_update(None, "synchronous", "OFF").map(|()| conn))
            .and_then(|conn| Session::new(conn, !read_only))
            .map_err(|error| refusal(500, error.to_string()))
    }

    /// One stream for the whole pipeline, closed at the end as a baton-less client's is.
    fn run(&mut self, requests: Vec<StreamRequest>) -> Result<Vec<StreamResult>, Refusal> {
        self.pipelines += 1;
        let mut session = self.open_stream()?;
        let mut closed = false;
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            if closed {
                let error = Error::new("STREAM_CLOSED", "the stream was closed earlier in this pipeline");
                results.push(StreamResult::Error { error });
                continue;
            }
            closed = matches!(request, StreamRequest::Close {});
            results.push(match session.handle(&self.shared, request) {
                Ok(response) => StreamResult::Ok { response },
                Err(error) => StreamResult::Error { error },
            });
        }
        session.reset(&self.shared);
        Ok(results)
    }
}

impl Cluster {
    /// A fresh primary in `folder` (which must exist and should be empty) and one replica per
    /// name in `replicas`, all at replication index 0.
    pub fn new(folder: &Path, replicas: &[&str]) -> Result<Self, String> {
        let primary_path = folder.join("primary.db");
        let log_reader = db::init(&primary_path).map_err(|e| format!("primary: {e}"))?;
        let primary = Node::new(primary_path, Role::Primary, 0);
        let mut cluster = Self { primary, replicas: BTreeMap::new(), log: Vec::new(), log_reader };
        for name in replicas {
            let path = folder.join(format!("replica-{name}.db"));
            let applier = db::init(&path)
                .and_then(|conn| conn.pragma_update(None, "synchronous", "OFF").map(|()| conn))
                .map_err(|e| format!("replica {name}: {e}"))?;
            let role = Role::Replica { primary_url: "sim://primary".to_string() };
            let replica = Replica { node: Node::new(path, role, 0), applier, lag_ms: 0.0 };
            cluster.replicas.insert((*name).to_string(), replica);
        }
        Ok(cluster)
    }

    /// Applies `dir/*.sql` in order on the primary, each in its own transaction, as
    /// `devdb migrate` does (without its `_migrations` bookkeeping). Replicas receive the schema
    /// through the log like any other change.
    pub fn migrate(&mut self, dir: &Path, now_ms: f64) -> Result<(), String> {
        for migration in crate::migrate::read_dir(dir)? {
            let sql = format!("BEGIN IMMEDIATE;\n{}\n;COMMIT;", migration.sql);
            let request = StreamRequest::Sequence { sql: Some(sql), sql_id: None, replication_index: None };
            let results = self.primary.run(vec![request]).map_err(|e| e.to_string())?;
            if let Some(StreamResult::Error { error }) = results.first() {
                return Err(format!("{}: {} ({})", migration.name, error.message, error.code));
            }
            self.collect_log(now_ms)?;
        }
        Ok(())
    }

    /// How long replica `name` waits before applying an entry; `None` if there is no such replica.
    pub fn set_lag(&mut self, name: &str, lag_ms: f64) -> Option<()> {
        self.replicas.get_mut(name).map(|replica| replica.lag_ms = lag_ms)
    }

    /// The names of the replicas, in order.
    pub fn replica_names(&self) -> Vec<String> {
        self.replicas.keys().cloned().collect()
    }

    /// The replication index of the primary (`None`) or of replica `Some(name)`.
    pub fn index(&self, replica: Option<&str>) -> Option<u64> {
        match replica {
            None => Some(self.primary.shared.index()),
            Some(name) => self.replicas.get(name).map(|replica| replica.node.shared.index()),
        }
    }

    /// Pipelines answered by the primary (`None`) or replica `Some(name)`.
    pub fn pipelines(&self, replica: Option<&str>) -> u64 {
        match replica {
            None => self.primary.pipelines,
            Some(name) => self.replicas.get(name).map_or(0, |replica| replica.node.pipelines),
        }
    }

    /// Answers a `POST /v3/pipeline` body at time `now_ms` on the primary (`None`) or replica
    /// `Some(name)`: the JSON response body, or the HTTP refusal devdb would send.
    pub fn pipeline(&mut self, replica: Option<&str>, body: &[u8], now_ms: f64) -> Result<Vec<u8>, Refusal> {
        self.catch_up(now_ms)?;
        let request: PipelineReqBody = serde_json::from_slice(body)
            .map_err(|e| refusal(400, format!("HRANA_PROTO_ERROR: invalid request body: {e}")))?;
        if request.baton.is_some() {
            return Err(refusal(400, "STREAM_EXPIRED: a simulated cluster keeps no streams"));
        }
        let results = match replica {
            None => {
                let results = self.primary.run(request.requests)?;
                self.collect_log(now_ms).map_err(|e| refusal(500, e))?;
                results
            }
            Some(name) => {
                let replica = self.replicas.get_mut(name).ok_or_else(|| refusal(404, format!("no replica {name}")))?;
                replica.node.run(request.requests)?
            }
        };
        let response = PipelineRespBody { baton: None, base_url: None, results };
        serde_json::to_vec(&response).map_err(|e| refusal(500, e.to_string()))
    }

    /// Applies, on every replica, the entries whose lag has passed by `now_ms`.
    pub fn catch_up(&mut self, now_ms: f64) -> Result<(), Refusal> {
        for (name, replica) in &mut self.replicas {
            let applied = replica.node.shared.index();
            // The log is in index order: start after what this replica has, stop at the first
            // entry still inside its lag (entries apply in order).
            let start = self.log.partition_point(|(_, entry)| entry.idx <= applied);
            let contiguous: Vec<LogEntry> = self.log[start..]
                .iter()
                .take_while(|(committed, _)| committed + replica.lag_ms <= now_ms)
                .map(|(_, entry)| entry.clone())
                .collect();
            if contiguous.is_empty() {
                continue;
            }
            let index = db::apply_entries(&replica.applier, &contiguous)
                .map_err(|e| refusal(500, format!("replica {name}: applying the log failed: {e}")))?;
            replica.node.shared.advance_index(index);
        }
        Ok(())
    }

    /// Stamps entries committed since the last call with `now_ms`.
    fn collect_log(&mut self, now_ms: f64) -> Result<(), String> {
        let after = self.log.last().map_or(0, |(_, entry)| entry.idx);
        let entries = db::read_log(&self.log_reader, after, u32::MAX).map_err(|e| e.to_string())?;
        self.log.extend(entries.into_iter().map(|entry| (now_ms, entry)));
        Ok(())
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
        cluster.set_lag("eu", 1_000.0).unwrap();
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
}
