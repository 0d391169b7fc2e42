//! Statement errors in sqld's shape: the same `code` names and message prefixes.
//!
//! Clients copy `code` into their own error (`LibsqlError.code` in JS) and compare it with a
//! base name such as `SQLITE_CONSTRAINT`, so devdb must never send an extended name
//! (`SQLITE_CONSTRAINT_UNIQUE`); the message keeps SQLite's detail
//! (`SQLite error: UNIQUE constraint failed: t.a`). The rules follow `libsql-server`'s
//! `hrana/stmt.rs` (`StmtError`):
//!
//! - a statement SQLite cannot parse: `SQL_PARSE_ERROR` (sqld's own parser finds these first);
//! - any other error SQLite reports with a position in the SQL text while preparing it
//!   (`no such table`, `no such column`): `SQL_INPUT_ERROR`, `SQL input error: … (at offset N)`;
//! - every other SQLite error: the *primary* result code's name, where `SQLITE_ERROR` and codes
//!   sqld does not name become `SQLITE_UNKNOWN`, message `SQLite error: …`;
//! - arguments that do not fit the parameters: `ARGS_INVALID` / `ARGS_BOTH_POSITIONAL_AND_NAMED`.

use rusqlite::ffi;

use crate::proto::Error;
use crate::state::Role;

/// sqld's name for a SQLite result code: only the primary code (low byte) counts.
pub fn sqlite_code_name(code: i32) -> &'static str {
    match code & 0xff {
        ffi::SQLITE_INTERNAL => "SQLITE_INTERNAL",
        ffi::SQLITE_PERM => "SQLITE_PERM",
        ffi::SQLITE_ABORT => "SQLITE_ABORT",
        ffi::SQLITE_BUSY => "SQLITE_BUSY",
        ffi::SQLITE_LOCKED => "SQLITE_LOCKED",
        ffi::SQLITE_NOMEM => "SQLITE_NOMEM",
        ffi::SQLITE_READONLY => "SQLITE_READONLY",
        ffi::SQLITE_INTERRUPT => "SQLITE_INTERRUPT",
        ffi::SQLITE_IOERR => "SQLITE_IOERR",
        ffi::SQLITE_CORRUPT => "SQLITE_CORRUPT",
        ffi::SQLITE_NOTFOUND => "SQLITE_NOTFOUND",
        ffi::SQLITE_FULL => "SQLITE_FULL",
        ffi::SQLITE_CANTOPEN => "SQLITE_CANTOPEN",
        ffi::SQLITE_PROTOCOL => "SQLITE_PROTOCOL",
        ffi::SQLITE_SCHEMA => "SQLITE_SCHEMA",
        ffi::SQLITE_TOOBIG => "SQLITE_TOOBIG",
        ffi::SQLITE_CONSTRAINT => "SQLITE_CONSTRAINT",
        ffi::SQLITE_MISMATCH => "SQLITE_MISMATCH",
        ffi::SQLITE_MISUSE => "SQLITE_MISUSE",
        ffi::SQLITE_NOLFS => "SQLITE_NOLFS",
        ffi::SQLITE_AUTH => "SQLITE_AUTH",
        ffi::SQLITE_RANGE => "SQLITE_RANGE",
        ffi::SQLITE_NOTADB => "SQLITE_NOTADB",
        // SQLITE_ERROR itself, and codes sqld has no name for (EMPTY, FORMAT, NOTICE, WARNING).
        _ => "SQLITE_UNKNOWN",
    }
}

/// A SQLite failure while running a statement (or while devdb runs its own SQL for it).
pub fn sqlite_error(code: i32, message: &str) -> Error {
    Error::new(sqlite_code_name(code), format!("SQLite error: {message}"))
}

/// Any rusqlite error, as sqld reports it.
pub fn sql_error(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqlInputError { msg, .. } if is_parse_error(&msg) => parse_error(&msg),
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            Error::new("SQL_INPUT_ERROR", format!("SQL input error: {msg} (at offset {offset})"))
        }
        rusqlite::Error::SqliteFailure(err, Some(msg))
            if err.code == rusqlite::ErrorCode::Unknown && is_parse_error(&msg) =>
        {
            parse_error(&msg)
        }
        rusqlite::Error::SqliteFailure(err, msg) => {
            let message = msg.unwrap_or_else(|| ffi::code_to_str(err.extended_code).to_owned());
            sqlite_error(err.extended_code, &message)
        }
        rusqlite::Error::MultipleStatement => many_statements(),
        rusqlite::Error::InvalidParameterCount(..) | rusqlite::Error::InvalidParameterName(_) => {
            args_invalid(&e.to_string())
        }
        other => sqlite_error(ffi::SQLITE_ERROR, &other.to_string()),
    }
}

/// Messages of SQLite's tokenizer and parser: the statements sqld's own parser rejects before
/// SQLite sees them.
fn is_parse_error(msg: &str) -> bool {
    msg.ends_with(": syntax error") || msg == "incomplete input" || msg.starts_with("unrecognized token:")
}

fn parse_error(msg: &str) -> Error {
    Error::new("SQL_PARSE_ERROR", format!("SQL string could not be parsed: {msg}"))
}

pub fn many_statements() -> Error {
    Error::new("SQL_MANY_STATEMENTS", "SQL string contains more than one statement")
}

pub fn no_statement() -> Error {
    Error::new("SQL_NO_STATEMENT", "SQL string does not contain any statement")
}

pub fn args_invalid(detail: &str) -> Error {
    Error::new("ARGS_INVALID", format!("Arguments do not match SQL parameters: {detail}"))
}

/// A request a correct client never sends (libsql-server's `ProtocolError`): sqld fails the
/// whole HTTP request with 400 and closes its stream, rather than answering the one request
/// with a Hrana error, so devdb does the same (code `HRANA_PROTO_ERROR`, as for a body that is
/// not valid Hrana JSON). Messages are sqld's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// The code of a request that is not valid Hrana, at the HTTP level.
pub const HRANA_PROTO_ERROR: &str = "HRANA_PROTO_ERROR";

impl ProtocolError {
    pub fn sql_and_sql_id() -> Self {
        Self("Either `sql` or `sql_id` are required, but not both".into())
    }

    pub fn no_sql() -> Self {
        Self("Either `sql` or `sql_id` are required".into())
    }

    pub fn sql_not_found(sql_id: i32) -> Self {
        Self(format!("SQL text {sql_id} not found"))
    }

    pub fn sql_exists(sql_id: i32) -> Self {
        Self(format!("SQL text {sql_id} already exists"))
    }

    /// A batch condition naming its own step, a later one, or none that exists: sqld checks
    /// every condition before it runs the batch.
    pub fn batch_cond_bad_step() -> Self {
        Self("Invalid reference to step in a batch condition".into())
    }
}

/// A request of a pipeline that was not run because the pipeline was cancelled (its client went
/// away, or devdb is shutting down); a statement stopped while it ran reports SQLite's own
/// `SQLITE_INTERRUPT` error.
pub fn interrupted() -> Error {
    Error::new("SQLITE_INTERRUPT", "SQLite error: interrupted: the client went away or devdb is shutting down")
}

/// sqld's code for an answer over its response size limit (`StmtError::ResponseTooLarge`).
pub const RESPONSE_TOO_LARGE: &str = "RESPONSE_TOO_LARGE";

/// An `execute` or `batch` whose rows exceed [`crate::exec::MAX_RESPONSE_BYTES`]; sqld's message.
pub fn response_too_large() -> Error {
    Error::new(RESPONSE_TOO_LARGE, "Response is too large")
}

/// A statement that may write, sent to a node that is not the primary. A replica answers as it
/// always has (`SQLITE_READONLY`, naming the primary); a fenced former primary answers
/// `PRIMARY_FENCED`, naming the newer term and, when known, where its primary is.
pub fn not_writable(role: &Role) -> Error {
    match role {
        Role::Replica { primary_url } => Error::new(
            "SQLITE_READONLY",
            format!(
                "devdb replica is read-only: send writes to the primary at {primary_url} (this statement may write)"
            ),
        ),
        Role::Fenced { by_term, primary_url } => {
            Error::new(PRIMARY_FENCED, fenced_message(*by_term, primary_url.as_deref()))
        }
        Role::Primary => Error::new("SQLITE_READONLY", "devdb cannot write right now"),
    }
}

/// The code of every refusal by a fenced former primary, at the statement and the HTTP level.
pub const PRIMARY_FENCED: &str = "PRIMARY_FENCED";

pub fn fenced_message(by_term: u64, primary_url: Option<&str>) -> String {
    let at = primary_url.map(|u| format!(" at {u}")).unwrap_or_default();
    format!(
        "devdb is fenced: it was a primary, and a newer primary (term {by_term}){at} has been promoted since; \
         it refuses reads and writes because its data may hold writes the new primary never had"
    )
}

pub fn args_both_positional_and_named() -> Error {
    Error::new("ARGS_BOTH_POSITIONAL_AND_NAMED", "Specifying both positional and named arguments is not supported")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sqld's table (libsql-server `hrana/stmt.rs`, `sqlite_error_code`), by primary code.
    #[test]
    fn every_result_code_has_sqlds_base_name() {
        let table: &[(i32, &str)] = &[
            (ffi::SQLITE_ERROR, "SQLITE_UNKNOWN"),
            (ffi::SQLITE_INTERNAL, "SQLITE_INTERNAL"),
            (ffi::SQLITE_PERM, "SQLITE_PERM"),
            (ffi::SQLITE_ABORT, "SQLITE_ABORT"),
            (ffi::SQLITE_ABORT_ROLLBACK, "SQLITE_ABORT"),
            (ffi::SQLITE_BUSY, "SQLITE_BUSY"),
            (ffi::SQLITE_BUSY_SNAPSHOT, "SQLITE_BUSY"),
            (ffi::SQLITE_LOCKED, "SQLITE_LOCKED"),
            (ffi::SQLITE_NOMEM, "SQLITE_NOMEM"),
            (ffi::SQLITE_READONLY, "SQLITE_READONLY"),
            (ffi::SQLITE_READONLY_DBMOVED, "SQLITE_READONLY"),
            (ffi::SQLITE_INTERRUPT, "SQLITE_INTERRUPT"),
            (ffi::SQLITE_IOERR, "SQLITE_IOERR"),
            (ffi::SQLITE_IOERR_FSYNC, "SQLITE_IOERR"),
            (ffi::SQLITE_CORRUPT, "SQLITE_CORRUPT"),
            (ffi::SQLITE_NOTFOUND, "SQLITE_NOTFOUND"),
            (ffi::SQLITE_FULL, "SQLITE_FULL"),
            (ffi::SQLITE_CANTOPEN, "SQLITE_CANTOPEN"),
            (ffi::SQLITE_PROTOCOL, "SQLITE_PROTOCOL"),
            (ffi::SQLITE_EMPTY, "SQLITE_UNKNOWN"),
            (ffi::SQLITE_SCHEMA, "SQLITE_SCHEMA"),
            (ffi::SQLITE_TOOBIG, "SQLITE_TOOBIG"),
            (ffi::SQLITE_CONSTRAINT, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_CONSTRAINT_PRIMARYKEY, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_CONSTRAINT_UNIQUE, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_CONSTRAINT_NOTNULL, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_CONSTRAINT_CHECK, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_CONSTRAINT_FOREIGNKEY, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_CONSTRAINT_TRIGGER, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_CONSTRAINT_ROWID, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_CONSTRAINT_DATATYPE, "SQLITE_CONSTRAINT"),
            (ffi::SQLITE_MISMATCH, "SQLITE_MISMATCH"),
            (ffi::SQLITE_MISUSE, "SQLITE_MISUSE"),
            (ffi::SQLITE_NOLFS, "SQLITE_NOLFS"),
            (ffi::SQLITE_AUTH, "SQLITE_AUTH"),
            (ffi::SQLITE_FORMAT, "SQLITE_UNKNOWN"),
            (ffi::SQLITE_RANGE, "SQLITE_RANGE"),
            (ffi::SQLITE_NOTADB, "SQLITE_NOTADB"),
            (ffi::SQLITE_NOTICE, "SQLITE_UNKNOWN"),
            (ffi::SQLITE_WARNING, "SQLITE_UNKNOWN"),
        ];
        for &(code, name) in table {
            assert_eq!(sqlite_code_name(code), name, "result code {code}");
        }
    }
}
