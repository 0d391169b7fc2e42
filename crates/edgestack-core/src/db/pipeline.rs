//! Builds one Hrana `POST /v3/pipeline` body per logical operation and reads its answer.
//!
//! A read is one batch without conditions; a write is one batch wrapped in
//! `BEGIN IMMEDIATE … COMMIT` whose steps each run only if the previous one succeeded, with a
//! `ROLLBACK` when anything failed — atomic in one round trip.
//!
//! A server labels each answer with its replication index when the answer ended (sqld: its
//! current frame once the program has run), so a change that lands while a read runs is in the
//! index but not in the rows. Where the index must vouch for the rows, a read is preceded, on
//! the same stream, by an **index probe** (`SELECT 1`): it ended before the read began, so the
//! read sees at least everything its index names ([`PipelineOutcome::index_before_read`]).
//!
//! Each statement pushed on a pipeline gets a [`StatementHandle`]; its result is read, and its
//! failure recognised, through that handle — never by position.

use std::marker::PhantomData;

use libsql_hrana::proto::{
    Batch, BatchCond, BatchResult, BatchStep, BatchStreamReq, CloseStreamReq, ExecuteStreamReq, PipelineReqBody,
    PipelineRespBody, Stmt, StmtResult, StreamRequest, StreamResponse, StreamResult,
};

use super::{FromRow, ReadError, Rows, Statement};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineKind {
    /// Independent reads; may go to a replica.
    Read,
    /// Reads that must see every committed write (credentials): primary only.
    AuthoritativeRead,
    /// All-or-nothing writes; only ever sent to the primary.
    Write,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub kind: PipelineKind,
    statements: Vec<Statement>,
    /// A cache keeps the answer, so it needs [`PipelineOutcome::index_before_read`].
    kept: bool,
}

/// Where one statement's result is in its pipeline's outcome, typed by the reader of its rows.
/// Only [`Pipeline::push`] makes one.
pub struct StatementHandle<R> {
    index: usize,
    reader: PhantomData<fn() -> R>,
}

impl<R> Clone for StatementHandle<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for StatementHandle<R> {}

impl<R> std::fmt::Debug for StatementHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StatementHandle({})", self.index)
    }
}

/// devdb's code for a request or a `BEGIN IMMEDIATE` refused by a fenced former primary
/// (docs/failover.md): nothing ran, which is what lets the data path send a write again.
pub const PRIMARY_FENCED: &str = "PRIMARY_FENCED";

/// A statement that SQLite refused (constraint, syntax…), as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementError {
    pub message: String,
    pub code: String,
}

impl StatementError {
    pub fn is_unique_violation(&self) -> bool {
        self.message.contains("UNIQUE constraint failed")
    }

    /// A NULL where the column refuses one: how a write that rests on an earlier check is
    /// rolled back when the check no longer holds (`accounts::sql::insert_verified_session`).
    pub fn is_not_null_violation(&self) -> bool {
        self.message.contains("NOT NULL constraint failed")
    }

    /// Refused by a fenced former primary ([`PRIMARY_FENCED`]).
    pub fn is_primary_fenced(&self) -> bool {
        self.code == PRIMARY_FENCED
    }

    /// The server could not run the statement now, whatever the statement: its write lock was
    /// busy (sqld answers `SQLITE_BUSY` at once while a checkpoint holds it), or sqld timed the
    /// transaction out (`TRANSACTION_TIMEOUT` on every step left) or had no room for it. Worth a
    /// retry later (503), not a bug (500).
    pub fn is_transient(&self) -> bool {
        let code = self.code.as_str();
        code.starts_with("SQLITE_BUSY")
            || code.starts_with("SQLITE_LOCKED")
            || matches!(code, "TRANSACTION_TIMEOUT" | "TRANSACTION_BUSY")
    }

    /// The failure of statement `index` as the pipeline's: [`DbError::Unavailable`] when
    /// [transient](Self::is_transient).
    fn into_db_error(self, index: usize) -> DbError {
        if self.is_transient() {
            DbError::Unavailable(format!("statement {index}: {} ({})", self.message, self.code))
        } else {
            DbError::Statement { index, error: self }
        }
    }
}

/// A pipeline response read with `libsql-hrana`'s types. Hrana 3 lets an `Error` go without its
/// code (`code?: string | null`, HRANA_3_SPEC.md "Errors"), which those types require; Turso and
/// sqld always send one. So an answer the types refuse is read once more with each error's
/// missing code as `""` (a code nothing recognises) — only then: an answer that parses costs
/// one parse, as before.
fn decode_response(body: &[u8]) -> Result<PipelineRespBody, DbError> {
    let refused = |e: serde_json::Error| DbError::Protocol(format!("not a pipeline response: {e}"));
    let first = match serde_json::from_slice(body) {
        Ok(response) => return Ok(response),
        Err(error) => error,
    };
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err(refused(first));
    };
    if !fill_missing_error_codes(&mut json) {
        return Err(refused(first));
    }
    let filled = serde_json::to_vec(&json).map_err(refused)?;
    serde_json::from_slice(&filled).map_err(refused)
}

/// Gives every error of a pipeline response (a stream result's, a batch step's) a code of `""`
/// where it has none or `null`; whether any was filled.
fn fill_missing_error_codes(response: &mut serde_json::Value) -> bool {
    let mut errors: Vec<&mut serde_json::Value> = Vec::new();
    for result in response.get_mut("results").and_then(serde_json::Value::as_array_mut).into_iter().flatten() {
        if result.get("type").and_then(serde_json::Value::as_str) == Some("error") {
            errors.extend(result.get_mut("error"));
        } else if let Some(steps) = result.pointer_mut("/response/result/step_errors").and_then(|s| s.as_array_mut()) {
            errors.extend(steps.iter_mut());
        }
    }
    let mut filled = false;
    for error in errors.into_iter().filter_map(serde_json::Value::as_object_mut) {
        if error.get("code").is_none_or(serde_json::Value::is_null) {
            error.insert("code".into(), serde_json::Value::String(String::new()));
            filled = true;
        }
    }
    filled
}

/// Why a pipeline produced no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The server could not be reached, timed out, or answered 5xx: try elsewhere or later.
    Unavailable(String),
    /// The server answered something that is not a Hrana pipeline response: a bug or a
    /// misconfiguration (wrong URL, wrong token).
    Protocol(String),
    /// A statement failed (a write's transaction was rolled back); `index` is its place in
    /// the pipeline, for the log — code recognises it with [`DbError::of_statement`].
    Statement { index: usize, error: StatementError },
}

impl DbError {
    /// The error `statement` failed with, if this is its failure.
    pub fn of_statement<R>(&self, statement: StatementHandle<R>) -> Option<&StatementError> {
        match self {
            Self::Statement { index, error } if *index == statement.index => Some(error),
            _ => None,
        }
    }

    fn unreadable(index: usize, error: ReadError) -> Self {
        Self::Protocol(format!("statement {index}: {error}"))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "database unavailable: {why}"),
            Self::Protocol(why) => write!(f, "database protocol error: {why}"),
            Self::Statement { index, error } => {
                write!(f, "statement {index} failed: {} ({})", error.message, error.code)
            }
        }
    }
}

/// The answer to a pipeline: one result per statement, and replication indexes.
#[derive(Debug, Clone)]
pub struct PipelineOutcome {
    pub results: Vec<Result<Rows, StatementError>>,
    /// The server's index when the answer ended: for a write, at least the write's own. For a
    /// read it may name changes the rows do not show, so nothing that trusts the rows uses it.
    pub replication_index: Option<u64>,
    /// Sent with an index probe only ([`Pipeline::request_body_with_probe`]): the server's
    /// index before the read began, which every row the read returned is at least as new as.
    pub index_before_read: Option<u64>,
    /// The answering node's term (`x-devdb-term`; Turso and sqld send none), set by the data path.
    pub term: Option<u64>,
    /// Why the server refused the index probe (`message (code)`), which the data path logs: the
    /// read stands, but vouches for no index.
    pub probe_refused: Option<String>,
}

impl PipelineOutcome {
    /// Every row `statement` returned, read by its reader.
    pub fn read<R: FromRow>(&self, statement: StatementHandle<R>) -> Result<Vec<R>, DbError> {
        self.rows(statement)?.read().map_err(|error| DbError::unreadable(statement.index, error))
    }

    /// The first row `statement` returned, if any, read by its reader.
    pub fn first<R: FromRow>(&self, statement: StatementHandle<R>) -> Result<Option<R>, DbError> {
        self.rows(statement)?.first().map_err(|error| DbError::unreadable(statement.index, error))
    }

    /// The rows of `statement`, or the error it failed with.
    fn rows<R>(&self, statement: StatementHandle<R>) -> Result<&Rows, DbError> {
        let index = statement.index;
        match self.results.get(index) {
            Some(Ok(rows)) => Ok(rows),
            Some(Err(error)) => Err(error.clone().into_db_error(index)),
            None => Err(DbError::Protocol(format!("no result for statement {index}"))),
        }
    }
}

impl Pipeline {
    pub fn read() -> Self {
        Self { kind: PipelineKind::Read, statements: Vec::new(), kept: false }
    }

    /// A read whose answer the read cache keeps when `kept`: it then carries the index probe,
    /// since an entry is labelled with the index its rows are at least as new as.
    pub fn cacheable_read(kept: bool) -> Self {
        Self { kind: PipelineKind::Read, statements: Vec::new(), kept }
    }

    /// Reads for decisions a stale copy must not make, such as checking a password that may
    /// just have changed.
    pub fn authoritative_read() -> Self {
        Self { kind: PipelineKind::AuthoritativeRead, statements: Vec::new(), kept: false }
    }

    pub fn write() -> Self {
        Self { kind: PipelineKind::Write, statements: Vec::new(), kept: false }
    }

    /// Whether a cache keeps this read's answer ([`Self::cacheable_read`]).
    pub fn is_kept(&self) -> bool {
        self.kept
    }

    /// Adds `statement`; its result is read through the handle.
    pub fn push<R: FromRow>(&mut self, statement: Statement<R>) -> StatementHandle<R> {
        let index = self.statements.len();
        self.statements.push(statement.read_as());
        StatementHandle { index, reader: PhantomData }
    }

    /// The JSON body for `POST /v3/pipeline`: the batch, then `close`.
    pub fn request_body(&self) -> Result<Vec<u8>, DbError> {
        self.body(false)
    }

    /// [`Self::request_body`] with the index probe first, for an answer that carries
    /// [`PipelineOutcome::index_before_read`].
    pub fn request_body_with_probe(&self) -> Result<Vec<u8>, DbError> {
        self.body(true)
    }

    fn body(&self, probe: bool) -> Result<Vec<u8>, DbError> {
        let steps = match self.kind {
            PipelineKind::Read | PipelineKind::AuthoritativeRead => {
                self.statements.iter().map(|s| step(stmt(s), None)).collect()
            }
            PipelineKind::Write => transaction_steps(&self.statements),
        };
        let mut requests = Vec::with_capacity(3);
        if probe {
            requests.push(StreamRequest::Execute(ExecuteStreamReq { stmt: raw("SELECT 1") }));
        }
        requests.push(StreamRequest::Batch(BatchStreamReq { batch: Batch { steps, replication_index: None } }));
        requests.push(StreamRequest::Close(CloseStreamReq {}));
        let body = PipelineReqBody { baton: None, requests };
        serde_json::to_vec(&body).map_err(|e| DbError::Protocol(format!("cannot encode pipeline: {e}")))
    }

    /// Reads the server's answer to [`Self::request_body`].
    pub fn parse_response(&self, body: &[u8]) -> Result<PipelineOutcome, DbError> {
        self.parse(body, false)
    }

    /// Reads the server's answer to [`Self::request_body_with_probe`]. A probe that failed
    /// vouches for nothing (`index_before_read` is `None`) but does not fail the read.
    pub fn parse_probed_response(&self, body: &[u8]) -> Result<PipelineOutcome, DbError> {
        self.parse(body, true)
    }

    fn parse(&self, body: &[u8], probed: bool) -> Result<PipelineOutcome, DbError> {
        let response = decode_response(body)?;
        let mut results = response.results.into_iter();
        let (index_before_read, probe_refused) = if probed {
            match results.next() {
                Some(StreamResult::Ok { response: StreamResponse::Execute(probe) }) => {
                    (probe.result.replication_index, None)
                }
                Some(StreamResult::Error { error }) => (None, Some(format!("{} ({})", error.message, error.code))),
                _ => return Err(DbError::Protocol("pipeline response without the probe's result".into())),
            }
        } else {
            (None, None)
        };
        let batch = match results.next() {
            Some(StreamResult::Ok { response: StreamResponse::Batch(batch) }) => batch.result,
            Some(StreamResult::Error { error }) => {
                return Err(DbError::Protocol(format!("pipeline refused: {} ({})", error.message, error.code)));
            }
            _ => return Err(DbError::Protocol("pipeline response without a batch result".into())),
        };
        let replication_index = batch.replication_index;
        let results = match self.kind {
            PipelineKind::Read | PipelineKind::AuthoritativeRead => {
                (0..self.statements.len()).map(|step| step_outcome(&batch, step)).collect()
            }
            PipelineKind::Write => {
                // Steps: BEGIN, the statements, COMMIT, ROLLBACK. BEGIN first: when it failed,
                // no statement ran, and the first one only reads as "did not run".
                if let Err(error) = step_outcome(&batch, 0) {
                    // A fenced node refuses BEGIN IMMEDIATE too: nothing ran, so the data path
                    // may send the write to the new primary (`Failure::of_statement`).
                    if error.is_primary_fenced() {
                        return Err(DbError::Statement { index: 0, error });
                    }
                    return Err(DbError::Unavailable(format!("BEGIN failed: {} ({})", error.message, error.code)));
                }
                let results: Vec<_> = (1..=self.statements.len()).map(|step| step_outcome(&batch, step)).collect();
                if let Some((index, Err(error))) = results.iter().enumerate().find(|(_, result)| result.is_err()) {
                    return Err(error.clone().into_db_error(index));
                }
                if let Err(error) = step_outcome(&batch, self.statements.len() + 1) {
                    return Err(DbError::Unavailable(format!("COMMIT failed: {}", error.message)));
                }
                results
            }
        };
        Ok(PipelineOutcome { results, replication_index, index_before_read, term: None, probe_refused })
    }
}

fn stmt(statement: &Statement) -> Stmt {
    Stmt {
        sql: Some(statement.sql.to_string()),
        sql_id: None,
        args: statement.args.clone(),
        named_args: Vec::new(),
        want_rows: Some(true),
        replication_index: None,
    }
}

fn raw(sql: &str) -> Stmt {
    Stmt {
        sql: Some(sql.to_string()),
        sql_id: None,
        args: Vec::new(),
        named_args: Vec::new(),
        want_rows: Some(false),
        replication_index: None,
    }
}

fn step(stmt: Stmt, condition: Option<BatchCond>) -> BatchStep {
    BatchStep { condition, stmt }
}

fn ok(step: usize) -> BatchCond {
    BatchCond::Ok { step: u32::try_from(step).unwrap_or(u32::MAX) }
}

fn transaction_steps(statements: &[Statement]) -> Vec<BatchStep> {
    let mut steps = vec![step(raw("BEGIN IMMEDIATE"), None)];
    for (index, statement) in statements.iter().enumerate() {
        steps.push(step(stmt(statement), Some(ok(index))));
    }
    let commit = steps.len();
    steps.push(step(raw("COMMIT"), Some(ok(commit - 1))));
    steps.push(step(raw("ROLLBACK"), Some(BatchCond::Not { cond: Box::new(ok(commit)) })));
    steps
}

fn step_outcome(batch: &BatchResult, step: usize) -> Result<Rows, StatementError> {
    if let Some(Some(error)) = batch.step_errors.get(step) {
        return Err(StatementError { message: error.message.clone(), code: error.code.clone() });
    }
    match batch.step_results.get(step) {
        Some(Some(result)) => Ok(Rows::from_result(result)),
        _ => Err(StatementError { message: "step did not run".into(), code: "NOT_RUN".into() }),
    }
}

/// Keeps `StmtResult` out of the public API.
impl Rows {
    fn from_result(result: &StmtResult) -> Self {
        let columns = result.cols.iter().map(|col| col.name.clone().unwrap_or_default()).collect();
        let rows = result.rows.iter().map(|row| row.values.clone()).collect();
        Rows::new(columns, rows, result.affected_row_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Row, integer, text};
    use serde_json::{Value as Json, json};

    /// The rows of the test statements: column `a`, text or integer.
    #[derive(Debug, PartialEq)]
    enum A {
        Text(String),
        Integer(i64),
    }

    impl FromRow for A {
        const COLUMNS: &'static [&'static str] = &["a"];

        fn from_row(row: Row<'_>) -> Option<Self> {
            row.text("a").map(|a| Self::Text(a.to_string())).or_else(|| row.integer("a").map(Self::Integer))
        }
    }

    /// An insert, then a select; with the handles of both.
    fn pipeline(mut pipeline: Pipeline) -> (Pipeline, StatementHandle<()>, StatementHandle<A>) {
        let insert = pipeline.push(Statement::new("INSERT INTO t (a) VALUES (?)", vec![text("x")]));
        let select = pipeline.push(Statement::new("SELECT a FROM t WHERE id = ?", vec![integer(7)]));
        (pipeline, insert, select)
    }

    #[test]
    fn read_pipeline_is_one_batch_then_close() {
        let body: Json = serde_json::from_slice(&pipeline(Pipeline::read()).0.request_body().unwrap()).unwrap();
        assert_eq!(body["requests"][0]["type"], "batch");
        assert_eq!(body["requests"][1]["type"], "close");
        let steps = body["requests"][0]["batch"]["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0]["stmt"]["sql"], "INSERT INTO t (a) VALUES (?)");
        assert_eq!(steps[0]["stmt"]["args"][0], json!({"type": "text", "value": "x"}));
        assert_eq!(steps[1]["stmt"]["args"][0], json!({"type": "integer", "value": "7"}));
        assert!(steps[1].get("condition").is_none() || steps[1]["condition"].is_null());
    }

    #[test]
    fn write_pipeline_is_a_conditional_transaction() {
        let body: Json = serde_json::from_slice(&pipeline(Pipeline::write()).0.request_body().unwrap()).unwrap();
        let steps = body["requests"][0]["batch"]["steps"].as_array().unwrap();
        let sql: Vec<&str> = steps.iter().map(|s| s["stmt"]["sql"].as_str().unwrap()).collect();
        assert_eq!(
            sql,
            ["BEGIN IMMEDIATE", "INSERT INTO t (a) VALUES (?)", "SELECT a FROM t WHERE id = ?", "COMMIT", "ROLLBACK"]
        );
        assert_eq!(steps[1]["condition"], json!({"type": "ok", "step": 0}));
        assert_eq!(steps[3]["condition"], json!({"type": "ok", "step": 2}));
        assert_eq!(steps[4]["condition"], json!({"type": "not", "cond": {"type": "ok", "step": 3}}));
    }

    fn ok_result(rows: Json) -> Json {
        json!({"cols": [{"name": "a", "decltype": null}], "rows": rows, "affected_row_count": 0, "last_insert_rowid": null, "replication_index": "5"})
    }

    fn response(step_results: Json, step_errors: Json) -> Vec<u8> {
        serde_json::to_vec(&json!({"baton": null, "base_url": null, "results": [
            {"type": "ok", "response": {"type": "batch", "result": {"step_results": step_results, "step_errors": step_errors, "replication_index": "42"}}},
            {"type": "ok", "response": {"type": "close"}}
        ]}))
        .unwrap()
    }

    #[test]
    fn parses_read_results_and_errors_per_statement() {
        let (pipeline, insert, select) = pipeline(Pipeline::read());
        let body = response(
            json!([null, ok_result(json!([[{"type": "text", "value": "x"}]]))]),
            json!([{"message": "UNIQUE constraint failed: t.a", "code": "SQLITE_CONSTRAINT"}, null]),
        );
        let outcome = pipeline.parse_response(&body).unwrap();
        assert_eq!(outcome.replication_index, Some(42));
        let failed = outcome.read(insert).unwrap_err();
        assert!(failed.of_statement(insert).is_some_and(StatementError::is_unique_violation));
        assert_eq!(failed.of_statement(select), None, "the failure names its own statement only");
        assert_eq!(outcome.read(select).unwrap(), [A::Text("x".into())]);
    }

    /// The probe goes first on the same stream, so it ended before the read began; its index is
    /// the one the rows vouch for, the batch's (which can name a change made during the read)
    /// stays the answer's own.
    #[test]
    fn a_probed_read_sends_select_1_first_and_reports_its_index_apart() {
        let (pipeline, _, select) = pipeline(Pipeline::cacheable_read(true));
        assert!(pipeline.is_kept());
        let body: Json = serde_json::from_slice(&pipeline.request_body_with_probe().unwrap()).unwrap();
        let types: Vec<&str> =
            body["requests"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["execute", "batch", "close"]);
        assert_eq!(body["requests"][0]["stmt"]["sql"], "SELECT 1");
        let answer = serde_json::to_vec(&json!({"baton": null, "base_url": null, "results": [
            {"type": "ok", "response": {"type": "execute", "result": ok_result(json!([[{"type": "integer", "value": "1"}]]))}},
            {"type": "ok", "response": {"type": "batch", "result": {"step_results": [null, ok_result(json!([[{"type": "text", "value": "x"}]]))], "step_errors": [null, null], "replication_index": "42"}}},
            {"type": "ok", "response": {"type": "close"}}
        ]}))
        .unwrap();
        let outcome = pipeline.parse_probed_response(&answer).unwrap();
        assert_eq!((outcome.index_before_read, outcome.replication_index), (Some(5), Some(42)));
        assert_eq!(outcome.read(select).unwrap(), [A::Text("x".into())]);
        let unprobed = pipeline.parse_response(&response(json!([null, ok_result(json!([]))]), json!([null, null])));
        assert_eq!(unprobed.unwrap().index_before_read, None, "no probe, no index vouching for the rows");

        // A probe the server refused vouches for nothing; the read itself still stands (a
        // review found its error taken for the batch's, failing the read).
        let refused = serde_json::to_vec(&json!({"baton": null, "base_url": null, "results": [
            {"type": "error", "error": {"message": "boom", "code": "X"}},
            {"type": "ok", "response": {"type": "batch", "result": {"step_results": [null, ok_result(json!([[{"type": "text", "value": "x"}]]))], "step_errors": [null, null], "replication_index": "42"}}},
            {"type": "ok", "response": {"type": "close"}}
        ]}))
        .unwrap();
        let outcome = pipeline.parse_probed_response(&refused).unwrap();
        assert_eq!((outcome.index_before_read, outcome.replication_index), (None, Some(42)));
        assert_eq!(outcome.probe_refused.as_deref(), Some("boom (X)"), "for the data path to log");
        assert_eq!(outcome.read(select).unwrap(), [A::Text("x".into())]);
        // An answer that lacks the probe's result is not a reading of this request.
        let without_probe = response(json!([null, ok_result(json!([]))]), json!([null, null]));
        assert!(matches!(pipeline.parse_probed_response(&without_probe), Err(DbError::Protocol(_))));
    }

    #[test]
    fn failed_write_step_is_a_statement_error() {
        let (pipeline, insert, _) = pipeline(Pipeline::write());
        let body = response(
            json!([ok_result(json!([])), null, null, null, ok_result(json!([]))]),
            json!([null, {"message": "UNIQUE constraint failed: t.a", "code": "SQLITE_CONSTRAINT"}, null, null, null]),
        );
        match pipeline.parse_response(&body) {
            Err(error) => assert!(error.of_statement(insert).is_some_and(StatementError::is_unique_violation)),
            other => panic!("{other:?}"),
        }
    }

    fn error(code: &str, message: &str) -> Json {
        json!({"message": message, "code": code})
    }

    /// sqld answers `SQLITE_BUSY` to BEGIN IMMEDIATE at once while a checkpoint holds the
    /// write lock: every statement is skipped, the ROLLBACK runs (and fails: no transaction).
    /// A review found this read as statement 0's failure ("did not run", a 500).
    #[test]
    fn a_write_whose_begin_failed_is_unavailable() {
        let (pipeline, insert, _) = pipeline(Pipeline::write());
        let busy = error("SQLITE_BUSY", "SQLite error: database is locked");
        let no_transaction = error("SQLITE_ERROR", "SQLite error: cannot rollback - no transaction is active");
        let body = response(json!([null, null, null, null, null]), json!([busy, null, null, null, no_transaction]));
        match pipeline.parse_response(&body) {
            Err(DbError::Unavailable(why)) => {
                assert!(why.contains("BEGIN failed") && why.contains("SQLITE_BUSY"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // A fenced devdb refuses BEGIN IMMEDIATE with its code: still recognisable as the fence.
        let fenced = error(PRIMARY_FENCED, "devdb is fenced");
        let body = response(json!([null, null, null, null, null]), json!([fenced, null, null, null, null]));
        let refused = pipeline.parse_response(&body).unwrap_err();
        assert!(crate::datapath::Failure::of_statement(&refused).is_some(), "{refused:?}");
        assert!(refused.of_statement(insert).is_some_and(|e| e.code == PRIMARY_FENCED));
    }

    /// sqld times a transaction out by failing every step left with `TRANSACTION_TIMEOUT` (it
    /// rolled the transaction back itself): the server's state, not the statement, so a 503.
    #[test]
    fn transient_statement_errors_are_unavailable_not_statement_failures() {
        let (write, _, _) = pipeline(Pipeline::write());
        let timeout = error("TRANSACTION_TIMEOUT", "Transaction timed out");
        let body = response(
            json!([ok_result(json!([])), null, null, null, null]),
            json!([null, timeout, timeout, timeout, timeout]),
        );
        assert!(matches!(write.parse_response(&body), Err(DbError::Unavailable(_))));
        // A read's statement refused for the same reasons is unavailable when read.
        let (read, insert, select) = pipeline(Pipeline::read());
        let body = response(
            json!([null, ok_result(json!([]))]),
            json!([error("SQLITE_BUSY", "SQLite error: database is locked"), null]),
        );
        let outcome = read.parse_response(&body).unwrap();
        assert!(matches!(outcome.read(insert), Err(DbError::Unavailable(_))));
        assert!(outcome.read(select).is_ok());
    }

    #[test]
    fn successful_write_returns_statement_rows() {
        let (pipeline, _, select) = pipeline(Pipeline::write());
        let body = response(
            json!([
                ok_result(json!([])),
                ok_result(json!([])),
                ok_result(json!([[{"type": "integer", "value": "3"}]])),
                ok_result(json!([])),
                null
            ]),
            json!([null, null, null, null, null]),
        );
        let outcome = pipeline.parse_response(&body).unwrap();
        assert_eq!(outcome.first(select).unwrap(), Some(A::Integer(3)));
    }

    #[test]
    fn a_result_without_the_readers_column_is_a_protocol_error() {
        struct B;
        impl FromRow for B {
            const COLUMNS: &'static [&'static str] = &["b"];

            fn from_row(_: Row<'_>) -> Option<Self> {
                Some(Self)
            }
        }
        let mut pipeline = Pipeline::read();
        let select = pipeline.push(Statement::<B>::new("SELECT a FROM t", vec![]));
        let outcome = pipeline.parse_response(&response(json!([ok_result(json!([]))]), json!([null]))).unwrap();
        assert!(matches!(outcome.read(select), Err(DbError::Protocol(why)) if why.contains("`b`")));
    }

    /// Hrana 3's `Error` is `{message: string, code?: string | null}` (HRANA_3_SPEC.md,
    /// "Errors"); `libsql-hrana` requires the code. A server within the spec that leaves it out
    /// still gets its statement's failure read as that statement's, not the whole answer
    /// refused as garbage.
    #[test]
    fn an_error_without_its_optional_code_is_still_read() {
        let (write, insert, _) = pipeline(Pipeline::write());
        for missing in [
            json!({"message": "UNIQUE constraint failed: t.a"}),
            json!({"message": "UNIQUE constraint failed: t.a", "code": null}),
        ] {
            let body = response(
                json!([ok_result(json!([])), null, null, null, ok_result(json!([]))]),
                json!([null, missing, null, null, null]),
            );
            match write.parse_response(&body) {
                Err(error) => {
                    let failed = error.of_statement(insert).unwrap_or_else(|| panic!("{error:?}"));
                    assert_eq!((failed.message.as_str(), failed.code.as_str()), ("UNIQUE constraint failed: t.a", ""));
                }
                other => panic!("{other:?}"),
            }
        }
        let (read, _, _) = pipeline(Pipeline::read());
        let refused = br#"{"baton": null, "base_url": null, "results": [{"type": "error", "error": {"message": "no such stream"}}, {"type": "error", "error": {"message": "no such stream", "code": null}}]}"#;
        match read.parse_response(refused) {
            Err(DbError::Protocol(why)) => assert!(why.contains("pipeline refused: no such stream"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let (pipeline, _, _) = pipeline(Pipeline::read());
        for body in
            [&b"<html>"[..], b"{}", br#"{"results": [{"type": "error", "error": {"message": "m", "code": "c"}}]}"#]
        {
            assert!(
                matches!(pipeline.parse_response(body), Err(DbError::Protocol(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
