//! Opening SQLite connections and the server's internal tables (replication log and state).
//!
//! The log lives in the same file as the data and is written inside the same transaction, so a
//! committed write and its log entry are durable together (WAL, `synchronous=FULL`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::capture;
use crate::streams::{REAP_INTERVAL, STREAM_IDLE_EXPIRY};

/// One replicated unit: the schema SQL (if the statement changed the schema) then row changes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    pub idx: u64,
    pub ddl: Option<String>,
    #[serde(with = "b64")]
    pub changeset: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// How long a writer waits for SQLite's single write lock before reporting SQLITE_BUSY. It
/// outlasts the longest time an abandoned stream can hold the lock (idle expiry plus one reaper
/// tick) with room for the rollback, so a writer queued behind a client that vanished mid
/// transaction gets the lock instead of an error. (sqld instead rolls back a write transaction
/// held for over 5 s as soon as another writer waits; devdb lets a live stream keep its lock.)
pub const BUSY_TIMEOUT: Duration =
    STREAM_IDLE_EXPIRY.saturating_add(REAP_INTERVAL).saturating_add(Duration::from_secs(4));

/// Opens a connection for serving clients (and, on the primary, for writing).
pub fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    if read_only {
        // Replica serving connections: writes come only from replication.
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(conn)
}

/// Prepares the file once at startup: WAL mode and the internal tables.
pub fn init(path: &Path, primary: bool) -> rusqlite::Result<Connection> {
    let conn = open(path, false)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    if primary {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _devdb_log(
                idx INTEGER PRIMARY KEY,
                ddl TEXT,
                changeset BLOB NOT NULL
            )",
        )?;
    } else {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS _devdb_state(k TEXT PRIMARY KEY, v INTEGER NOT NULL)")?;
        // Rows written by replication must not fire the replica's copies of the triggers: the
        // changeset already holds every row the primary's triggers wrote.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    }
    Ok(conn)
}

/// Primary: the index of the last committed log entry.
pub fn last_log_index(conn: &Connection) -> rusqlite::Result<u64> {
    let idx: i64 = conn.query_row("SELECT coalesce(max(idx), 0) FROM _devdb_log", [], |r| r.get(0))?;
    Ok(u64::try_from(idx).unwrap_or(0))
}

/// Primary: appends a log entry in the caller's open transaction; returns its index.
pub fn append_log(conn: &Connection, ddl: Option<&str>, changeset: &[u8]) -> rusqlite::Result<u64> {
    let rowid = conn.last_insert_rowid();
    let mut st = conn.prepare_cached("INSERT INTO _devdb_log(ddl, changeset) VALUES (?1, ?2) RETURNING idx")?;
    let idx: i64 = st.query_row(params![ddl, changeset], |r| r.get(0))?;
    capture::set_last_insert_rowid(conn, rowid);
    Ok(u64::try_from(idx).unwrap_or(0))
}

/// Primary: committed entries after `after`, oldest first.
pub fn read_log(conn: &Connection, after: u64, limit: u32) -> rusqlite::Result<Vec<LogEntry>> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut st =
        conn.prepare_cached("SELECT idx, ddl, changeset FROM _devdb_log WHERE idx > ?1 ORDER BY idx LIMIT ?2")?;
    let rows = st.query_map(params![after, limit], |r| {
        Ok(LogEntry { idx: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), ddl: r.get(1)?, changeset: r.get(2)? })
    })?;
    rows.collect()
}

/// Replica: the primary index applied so far (persisted with the data).
pub fn applied_index(conn: &Connection) -> rusqlite::Result<u64> {
    let v: Option<i64> =
        conn.query_row("SELECT v FROM _devdb_state WHERE k = 'applied_index'", [], |r| r.get(0)).optional()?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Replica: applies entries in one transaction, together with the new applied index.
pub fn apply_entries(conn: &Connection, entries: &[LogEntry]) -> rusqlite::Result<u64> {
    let tx = conn.unchecked_transaction()?;
    let mut last = applied_index(&tx)?;
    for e in entries {
        if e.idx <= last {
            continue;
        }
        if let Some(ddl) = &e.ddl {
            tx.execute_batch(ddl)?;
        }
        capture::apply(&tx, &e.changeset)?;
        last = e.idx;
    }
    tx.execute(
        "INSERT INTO _devdb_state(k, v) VALUES ('applied_index', ?1)
         ON CONFLICT(k) DO UPDATE SET v = excluded.v",
        params![i64::try_from(last).unwrap_or(i64::MAX)],
    )?;
    tx.commit()?;
    Ok(last)
}
