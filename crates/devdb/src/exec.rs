//! Executing Hrana requests (execute, batch, sequence, describe, ...) on one stream's connection.
//!
//! On the primary every statement that may write runs with change capture: its changeset (and its
//! SQL when it changed the schema) is appended to the replication log in the same transaction.
//! Autocommit writes are wrapped in `BEGIN IMMEDIATE ... COMMIT` so the log insert is atomic with
//! them; inside a client transaction the entries commit or roll back with the client's work.

use std::collections::HashMap;
use std::time::Instant;

use rusqlite::fallible_iterator::FallibleIterator as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, Statement, ffi};

use crate::capture::{Capture, HookAnchor};
use crate::db;
use crate::proto::{
    Batch, BatchCond, BatchResult, Col, DescribeCol, DescribeParam, DescribeResult, Error, NamedArg, Stmt, StmtResult,
    StreamRequest, StreamResponse, Value,
};
use crate::state::{Role, Shared, Stats};

/// Bound on SQL texts a stream may store, so one client cannot grow memory without limit.
const MAX_STORED_SQL: usize = 1024;

/// One Hrana stream: a dedicated connection and its stored SQL texts.
pub struct Session {
    /// Declared before `conn` so it is dropped first (see [`HookAnchor`]).
    _anchor: Option<HookAnchor>,
    pub conn: Connection,
    sqls: HashMap<i32, String>,
    /// This connection wrote log entries in a transaction that has not been seen to end yet.
    pending: bool,
}

impl Session {
    /// `capture`: this is a primary connection whose writes are logged.
    pub fn new(conn: Connection, capture: bool) -> rusqlite::Result<Self> {
        let anchor = if capture { Some(HookAnchor::install(&conn)?) } else { None };
        Ok(Self { _anchor: anchor, conn, sqls: HashMap::new(), pending: false })
    }

    /// Makes the connection reusable by another stream: no open transaction, no stored SQL.
    pub fn reset(&mut self, shared: &Shared) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.sqls.clear();
        self.publish(shared);
    }

    /// Once a transaction that wrote log entries has ended, expose the new committed index.
    fn publish(&mut self, shared: &Shared) {
        if self.pending && self.conn.is_autocommit() {
            self.pending = false;
            if let Ok(idx) = db::last_log_index(&self.conn) {
                shared.advance_index(idx);
            }
        }
    }

    pub fn handle(&mut self, shared: &Shared, req: StreamRequest) -> Result<StreamResponse, Error> {
        match req {
            StreamRequest::Close {} => Ok(StreamResponse::Close {}),
            StreamRequest::Execute { stmt } => {
                let result = self.execute(shared, &stmt)?;
                Ok(StreamResponse::Execute { result })
            }
            StreamRequest::Batch { batch } => Ok(StreamResponse::Batch { result: self.batch(shared, &batch) }),
            StreamRequest::Sequence { sql, sql_id, .. } => {
                let sql = self.resolve_sql(sql.as_deref(), sql_id)?;
                self.sequence(shared, &sql)?;
                Ok(StreamResponse::Sequence {})
            }
            StreamRequest::Describe { sql, sql_id, .. } => {
                let sql = self.resolve_sql(sql.as_deref(), sql_id)?;
                Ok(StreamResponse::Describe { result: self.describe(&sql)? })
            }
            StreamRequest::StoreSql { sql_id, sql } => {
                if self.sqls.len() >= MAX_STORED_SQL && !self.sqls.contains_key(&sql_id) {
                    return Err(Error::new("SQL_STORE_FULL", "too many stored SQL texts"));
                }
                self.sqls.insert(sql_id, sql);
                Ok(StreamResponse::StoreSql {})
            }
            StreamRequest::CloseSql { sql_id } => {
                self.sqls.remove(&sql_id);
                Ok(StreamResponse::CloseSql {})
            }
            StreamRequest::GetAutocommit {} => {
                Ok(StreamResponse::GetAutocommit { is_autocommit: self.conn.is_autocommit() })
            }
        }
    }

    fn resolve_sql(&self, sql: Option<&str>, sql_id: Option<i32>) -> Result<String, Error> {
        match (sql, sql_id) {
            (Some(sql), None) => Ok(sql.to_owned()),
            (None, Some(id)) => self
                .sqls
                .get(&id)
                .cloned()
                .ok_or_else(|| Error::new("SQL_NOT_FOUND", format!("no stored SQL with id {id}"))),
            (Some(_), Some(_)) => Err(Error::new("SQL_MANY", "a statement must have either sql or sql_id, not both")),
            (None, None) => Err(Error::new("SQL_NO_STATEMENT", "a statement must have sql or sql_id")),
        }
    }

    pub fn execute(&mut self, shared: &Shared, stmt: &Stmt) -> Result<StmtResult, Error> {
        let mut sql = self.resolve_sql(stmt.sql.as_deref(), stmt.sql_id)?;
        if is_begin_readonly(&sql) {
            // libSQL's read transaction (`@libsql/client`'s "read" mode); plain SQLite lacks it.
            sql = "BEGIN DEFERRED".to_owned();
        }
        Stats::bump(&shared.stats.statements, 1);
        let st = self.conn.prepare(&sql).map_err(sql_error)?;
        let mut st = st;
        bind(&mut st, &stmt.args, &stmt.named_args)?;
        let result = run_statement(&self.conn, &mut self.pending, shared, st, stmt.want_rows.unwrap_or(true));
        self.publish(shared);
        let mut result = result?;
        result.replication_index = Some(shared.index());
        Ok(result)
    }

    pub fn batch(&mut self, shared: &Shared, batch: &Batch) -> BatchResult {
        let mut step_results: Vec<Option<StmtResult>> = Vec::with_capacity(batch.steps.len());
        let mut step_errors: Vec<Option<Error>> = Vec::with_capacity(batch.steps.len());
        for step in &batch.steps {
            let run = match &step.condition {
                None => true,
                Some(cond) => eval_cond(cond, &step_results, &step_errors, &self.conn),
            };
            if !run {
                step_results.push(None);
                step_errors.push(None);
                continue;
            }
            match self.execute(shared, &step.stmt) {
                Ok(r) => {
                    step_results.push(Some(r));
                    step_errors.push(None);
                }
                Err(e) => {
                    step_results.push(None);
                    step_errors.push(Some(e));
                }
            }
        }
        BatchResult { step_results, step_errors, replication_index: Some(shared.index()) }
    }

    fn sequence(&mut self, shared: &Shared, sql: &str) -> Result<(), Error> {
        let mut batch = rusqlite::Batch::new(&self.conn, sql);
        let mut outcome = Ok(());
        loop {
            let st = match batch.next() {
                Ok(Some(st)) => st,
                Ok(None) => break,
                Err(e) => {
                    outcome = Err(sql_error(e));
                    break;
                }
            };
            Stats::bump(&shared.stats.statements, 1);
            if let Err(e) = run_statement(&self.conn, &mut self.pending, shared, st, false) {
                outcome = Err(e);
                break;
            }
        }
        self.publish(shared);
        outcome
    }

    fn describe(&self, sql: &str) -> Result<DescribeResult, Error> {
        let st = self.conn.prepare(sql).map_err(sql_error)?;
        let params = (1..=st.parameter_count())
            .map(|i| DescribeParam { name: st.parameter_name(i).map(str::to_owned) })
            .collect();
        let cols = st
            .columns()
            .into_iter()
            .map(|c| DescribeCol { name: c.name().to_owned(), decltype: c.decl_type().map(str::to_owned) })
            .collect();
        Ok(DescribeResult { params, cols, is_explain: st.is_explain() > 0, is_readonly: st.readonly() })
    }
}

fn eval_cond(cond: &BatchCond, results: &[Option<StmtResult>], errors: &[Option<Error>], conn: &Connection) -> bool {
    let at = |step: u32| usize::try_from(step).ok();
    match cond {
        BatchCond::Ok { step } => at(*step).and_then(|i| results.get(i)).is_some_and(Option::is_some),
        BatchCond::Error { step } => at(*step).and_then(|i| errors.get(i)).is_some_and(Option::is_some),
        BatchCond::Not { cond } => !eval_cond(cond, results, errors, conn),
        BatchCond::And { conds } => conds.iter().all(|c| eval_cond(c, results, errors, conn)),
        BatchCond::Or { conds } => conds.iter().any(|c| eval_cond(c, results, errors, conn)),
        BatchCond::IsAutocommit {} => conn.is_autocommit(),
    }
}

fn to_sql_value(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Float(f) => SqlValue::Real(*f),
        Value::Text(t) => SqlValue::Text(t.clone()),
        Value::Blob(b) => SqlValue::Blob(b.clone()),
    }
}

fn from_sql_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Named arguments match a parameter with or without its prefix (`:a`, `@a`, `$a` or `a`);
/// anything else binds by position.
fn bind(st: &mut Statement<'_>, args: &[Value], named: &[NamedArg]) -> Result<(), Error> {
    let count = st.parameter_count();
    if args.len() > count {
        return Err(Error::new("ARGS_INVALID", format!("{} positional arguments for {count} parameters", args.len())));
    }
    for i in 1..=count {
        let by_name = st.parameter_name(i).and_then(|pname| {
            let bare = pname.get(1..).unwrap_or("");
            named.iter().find(|a| a.name == pname || a.name == bare).map(|a| &a.value)
        });
        let value = by_name.or_else(|| args.get(i - 1));
        if let Some(v) = value {
            st.raw_bind_parameter(i, to_sql_value(v)).map_err(sql_error)?;
        }
    }
    Ok(())
}

fn columns(st: &Statement<'_>) -> Vec<Col> {
    st.columns()
        .into_iter()
        .map(|c| Col { name: Some(c.name().to_owned()), decltype: c.decl_type().map(str::to_owned) })
        .collect()
}

fn step_rows(st: &mut Statement<'_>, want_rows: bool) -> rusqlite::Result<Vec<Vec<Value>>> {
    let ncols = st.column_count();
    let mut out = Vec::new();
    let mut rows = st.raw_query();
    while let Some(row) = rows.next()? {
        if want_rows {
            let mut vals = Vec::with_capacity(ncols);
            for i in 0..ncols {
                vals.push(from_sql_value(row.get_ref(i)?));
            }
            out.push(vals);
        }
    }
    Ok(out)
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
}

/// Runs one prepared statement to completion; writes on the primary are captured and logged.
fn run_statement(
    conn: &Connection,
    pending: &mut bool,
    shared: &Shared,
    mut st: Statement<'_>,
    want_rows: bool,
) -> Result<StmtResult, Error> {
    let started = Instant::now();
    let cols = columns(&st);
    let tx_control = st.expanded_sql().is_some_and(|sql| is_tx_control(&sql));
    let is_replica = matches!(shared.role, Role::Replica { .. });
    // Transaction control never changes rows itself, so it is neither wrapped nor captured; on a
    // replica only the read-only kinds (not BEGIN IMMEDIATE/EXCLUSIVE) are allowed.
    if st.readonly() || (tx_control && !is_replica) {
        let rows = step_rows(&mut st, want_rows).map_err(sql_error)?;
        return Ok(result(cols, rows, 0, conn.last_insert_rowid(), started));
    }
    if let Role::Replica { primary_url } = &shared.role {
        return Err(Error::new(
            "SQLITE_READONLY",
            format!(
                "devdb replica is read-only: send writes to the primary at {primary_url} \
                 (this statement may write)"
            ),
        ));
    }
    let wrapped = conn.is_autocommit();
    if wrapped {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
    }
    let logged = (|| {
        let schema_before = schema_version(conn).map_err(sql_error)?;
        let total_before = conn.total_changes();
        let capture = Capture::start(conn).map_err(sql_error)?;
        let rows = step_rows(&mut st, want_rows);
        let affected = if conn.total_changes() == total_before { 0 } else { conn.changes() };
        let rowid = conn.last_insert_rowid();
        let ddl = st.expanded_sql();
        drop(st);
        let changeset = capture.changeset().map_err(sql_error)?;
        drop(capture);
        // A failed autocommit statement is rolled back entirely below; a failed statement inside
        // a client transaction may still have left changes (e.g. `OR FAIL`), which must be logged.
        let rows = match rows {
            Err(e) if wrapped => return Err(sql_error(e)),
            other => other,
        };
        let schema_changed = schema_version(conn).map_err(sql_error)? != schema_before;
        let ddl = if schema_changed { ddl } else { None };
        if !changeset.is_empty() || ddl.is_some() {
            db::append_log(conn, ddl.as_deref(), &changeset).map_err(sql_error)?;
            *pending = true;
        }
        let rows = rows.map_err(sql_error)?;
        Ok(result(cols, rows, affected, rowid, started))
    })();
    if wrapped {
        match &logged {
            Ok(_) => {
                if let Err(e) = conn.execute_batch("COMMIT") {
                    let _ = conn.execute_batch("ROLLBACK");
                    *pending = false;
                    return Err(sql_error(e));
                }
            }
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK");
                *pending = false;
            }
        }
    }
    logged
}

fn result(cols: Vec<Col>, rows: Vec<Vec<Value>>, affected: u64, rowid: i64, started: Instant) -> StmtResult {
    let rows_read = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    StmtResult {
        cols,
        rows,
        affected_row_count: affected,
        last_insert_rowid: Some(rowid),
        replication_index: None,
        rows_read,
        rows_written: affected,
        query_duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// SQLite's own message, with a code naming the (extended) result code.
pub fn sql_error(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(err, msg) => {
            let message = msg.clone().unwrap_or_else(|| err.to_string());
            Error::new(code_name(err.extended_code), message)
        }
        rusqlite::Error::MultipleStatement => {
            Error::new("SQL_MANY_STATEMENTS", "SQL string contains more than one statement")
        }
        rusqlite::Error::InvalidParameterCount(..) | rusqlite::Error::InvalidParameterName(_) => {
            Error::new("ARGS_INVALID", e.to_string())
        }
        _ => Error::new("SQLITE_ERROR", e.to_string()),
    }
}

fn code_name(code: i32) -> &'static str {
    match code {
        ffi::SQLITE_CONSTRAINT_PRIMARYKEY => "SQLITE_CONSTRAINT_PRIMARYKEY",
        ffi::SQLITE_CONSTRAINT_UNIQUE => "SQLITE_CONSTRAINT_UNIQUE",
        ffi::SQLITE_CONSTRAINT_NOTNULL => "SQLITE_CONSTRAINT_NOTNULL",
        ffi::SQLITE_CONSTRAINT_CHECK => "SQLITE_CONSTRAINT_CHECK",
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => "SQLITE_CONSTRAINT_FOREIGNKEY",
        ffi::SQLITE_CONSTRAINT_TRIGGER => "SQLITE_CONSTRAINT_TRIGGER",
        ffi::SQLITE_CONSTRAINT_ROWID => "SQLITE_CONSTRAINT_ROWID",
        _ => match code & 0xff {
            ffi::SQLITE_CONSTRAINT => "SQLITE_CONSTRAINT",
            ffi::SQLITE_BUSY => "SQLITE_BUSY",
            ffi::SQLITE_LOCKED => "SQLITE_LOCKED",
            ffi::SQLITE_READONLY => "SQLITE_READONLY",
            ffi::SQLITE_MISMATCH => "SQLITE_MISMATCH",
            ffi::SQLITE_RANGE => "SQLITE_RANGE",
            ffi::SQLITE_TOOBIG => "SQLITE_TOOBIG",
            ffi::SQLITE_INTERRUPT => "SQLITE_INTERRUPT",
            ffi::SQLITE_FULL => "SQLITE_FULL",
            ffi::SQLITE_CORRUPT => "SQLITE_CORRUPT",
            ffi::SQLITE_AUTH => "SQLITE_AUTH",
            _ => "SQLITE_ERROR",
        },
    }
}

/// The first keyword of `sql`, after whitespace and comments, upper-cased.
fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase()
}

fn is_tx_control(sql: &str) -> bool {
    matches!(first_keyword(sql).as_str(), "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE")
}

fn is_begin_readonly(sql: &str) -> bool {
    let words: Vec<String> = sql.trim().trim_end_matches(';').split_whitespace().map(str::to_ascii_uppercase).collect();
    matches!(
        words.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["BEGIN", "TRANSACTION", "READONLY"] | ["BEGIN", "READONLY"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_transaction_control_after_comments() {
        assert!(is_tx_control("  -- hi\n /* x */ begin immediate"));
        assert!(is_tx_control("COMMIT;"));
        assert!(!is_tx_control("INSERT INTO t VALUES (1)"));
        assert!(!is_tx_control("/* unterminated"));
        assert!(is_begin_readonly("BEGIN TRANSACTION READONLY"));
        assert!(!is_begin_readonly("BEGIN IMMEDIATE"));
    }
}
