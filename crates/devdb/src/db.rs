//! Opening SQLite connections and the server's internal tables: the replication log, the
//! applied index and the node's persisted state (role, term, cluster, peers).
//!
//! The log lives in the same file as the data and is written inside the same transaction, so a
//! committed write and its log entry are durable together (WAL, `synchronous=FULL`). Every node
//! keeps the log: the primary writes it, a replica stores each entry it applies, so a promoted
//! replica can serve the whole history to the others. Entries form a hash chain (each entry's
//! hash covers the previous one), so two nodes that agree on the hash at an index agree on
//! every entry up to it: that is how a replica proves it may follow a new primary.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::capture;
use crate::state::NodeState;
use crate::streams::{REAP_INTERVAL, STREAM_IDLE_EXPIRY};

/// The chained hash of a log entry; the hash "at index 0" (before any entry) is all zeros.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const GENESIS: Hash = Hash([0; 32]);

    /// Hashes an entry onto the chain ending in `prev`.
    pub fn chain(prev: &Hash, idx: u64, term: u64, ddl: Option<&str>, changeset: &[u8]) -> Hash {
        let mut h = Sha256::new();
        h.update(b"devdb-log-entry-v1");
        h.update(prev.0);
        h.update(idx.to_be_bytes());
        h.update(term.to_be_bytes());
        match ddl {
            Some(sql) => {
                h.update([1]);
                h.update(u64::try_from(sql.len()).unwrap_or(u64::MAX).to_be_bytes());
                h.update(sql.as_bytes());
            }
            None => h.update([0]),
        }
        h.update(changeset);
        Hash(h.finalize().into())
    }

    pub fn parse(hex: &str) -> Option<Hash> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Hash(out))
    }

    fn from_blob(blob: &[u8]) -> Option<Hash> {
        <[u8; 32]>::try_from(blob).ok().map(Hash)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::parse(&s).ok_or_else(|| serde::de::Error::custom("a log hash is 64 hex digits"))
    }
}

/// One replicated unit: the schema SQL (if the statement changed the schema) then row changes,
/// the term of the primary that wrote it, and its place in the hash chain.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    pub idx: u64,
    pub term: u64,
    pub ddl: Option<String>,
    #[serde(with = "b64")]
    pub changeset: Vec<u8>,
    pub hash: Hash,
}

/// Where a node's log ends: the last entry's index and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub index: u64,
    pub hash: Hash,
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

/// Prepares the file once at startup (WAL mode, the internal tables, an older file's log
/// brought to the current shape) and returns the server's own control connection: it reads
/// the log on a primary, applies it on a replica, and writes the node's state.
pub fn init(path: &Path) -> rusqlite::Result<Connection> {
    let conn = open(path, false)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _devdb_log(
            idx INTEGER PRIMARY KEY,
            ddl TEXT,
            changeset BLOB NOT NULL,
            term INTEGER NOT NULL DEFAULT 1,
            hash BLOB
        );
        CREATE TABLE IF NOT EXISTS _devdb_state(k TEXT PRIMARY KEY, v INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS _devdb_node(id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);",
    )?;
    upgrade_log(&conn)?;
    // Rows written by replication must not fire the replica's copies of the triggers: the
    // changeset already holds every row the primary's triggers wrote. (This connection never
    // writes user rows any other way.)
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    Ok(conn)
}

/// A log written before terms existed gets term 1 and its hash chain, once.
fn upgrade_log(conn: &Connection) -> rusqlite::Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('_devdb_log')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let tx = conn.unchecked_transaction()?;
    if !columns.iter().any(|c| c == "term") {
        tx.execute_batch("ALTER TABLE _devdb_log ADD COLUMN term INTEGER NOT NULL DEFAULT 1")?;
    }
    if !columns.iter().any(|c| c == "hash") {
        tx.execute_batch("ALTER TABLE _devdb_log ADD COLUMN hash BLOB")?;
    }
    let unhashed: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM _devdb_log WHERE hash IS NULL)", [], |r| r.get(0))?;
    if unhashed {
        let mut prev = Hash::GENESIS;
        for e in read_log(&tx, 0, u32::MAX)? {
            prev = Hash::chain(&prev, e.idx, e.term, e.ddl.as_deref(), &e.changeset);
            tx.execute("UPDATE _devdb_log SET hash = ?2 WHERE idx = ?1", params![to_i64(e.idx), &prev.0[..]])?;
        }
    }
    tx.commit()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The node's persisted state, if this file has been served by a devdb that records it.
pub fn load_node(conn: &Connection) -> rusqlite::Result<Option<NodeState>> {
    let text: Option<String> =
        conn.query_row("SELECT state FROM _devdb_node WHERE id = 1", [], |r| r.get(0)).optional()?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
    })
    .transpose()
}

/// Stores the node's state (in the caller's transaction, if one is open).
pub fn save_node(conn: &Connection, node: &NodeState) -> rusqlite::Result<()> {
    let text = serde_json::to_string(node).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT INTO _devdb_node(id, state) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET state = excluded.state",
        params![text],
    )?;
    Ok(())
}

/// [`save_node`] as an autocommit write that waits at most `wait` for SQLite's write lock, for
/// bookkeeping that must not queue behind a client's long transaction (it is retried later).
pub fn save_node_within(conn: &Connection, node: &NodeState, wait: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(wait)?;
    let saved = save_node(conn, node);
    conn.busy_timeout(BUSY_TIMEOUT)?;
    saved
}

/// The index of the last log entry (the primary's replication index).
pub fn last_log_index(conn: &Connection) -> rusqlite::Result<u64> {
    let idx: i64 = conn.query_row("SELECT coalesce(max(idx), 0) FROM _devdb_log", [], |r| r.get(0))?;
    Ok(to_u64(idx))
}

/// Where this node's log ends.
pub fn position(conn: &Connection) -> rusqlite::Result<Position> {
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT idx, hash FROM _devdb_log ORDER BY idx DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match last {
        Some((idx, hash)) => Position { index: to_u64(idx), hash: Hash::from_blob(&hash).unwrap_or(Hash::GENESIS) },
        None => Position { index: 0, hash: Hash::GENESIS },
    })
}

/// The chain's hash after entry `idx` (the genesis hash for 0), if this log has that entry.
pub fn hash_at(conn: &Connection, idx: u64) -> rusqlite::Result<Option<Hash>> {
    if idx == 0 {
        return Ok(Some(Hash::GENESIS));
    }
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM _devdb_log WHERE idx = ?1")?
        .query_row(params![to_i64(idx)], |r| r.get(0))
        .optional()?;
    Ok(blob.and_then(|b| Hash::from_blob(&b)))
}

/// Primary: appends a log entry of `term` in the caller's open transaction (which holds the
/// write lock, so nobody else appends meanwhile); returns its index.
pub fn append_log(conn: &Connection, term: u64, ddl: Option<&str>, changeset: &[u8]) -> rusqlite::Result<u64> {
    let rowid = conn.last_insert_rowid();
    let end = position(conn)?;
    let idx = end.index + 1;
    let hash = Hash::chain(&end.hash, idx, term, ddl, changeset);
    conn.prepare_cached("INSERT INTO _devdb_log(idx, term, ddl, changeset, hash) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![to_i64(idx), to_i64(term), ddl, changeset, &hash.0[..]])?;
    capture::set_last_insert_rowid(conn, rowid);
    Ok(idx)
}

/// Committed entries after `after`, oldest first.
pub fn read_log(conn: &Connection, after: u64, limit: u32) -> rusqlite::Result<Vec<LogEntry>> {
    let mut st = conn.prepare_cached(
        "SELECT idx, term, ddl, changeset, hash FROM _devdb_log WHERE idx > ?1 ORDER BY idx LIMIT ?2",
    )?;
    let rows = st.query_map(params![to_i64(after), limit], |r| {
        let hash: Option<Vec<u8>> = r.get(4)?;
        Ok(LogEntry {
            idx: to_u64(r.get(0)?),
            term: to_u64(r.get(1)?),
            ddl: r.get(2)?,
            changeset: r.get(3)?,
            hash: hash.as_deref().and_then(Hash::from_blob).unwrap_or(Hash::GENESIS),
        })
    })?;
    rows.collect()
}

/// Replica: the primary index applied so far (persisted with the data).
pub fn applied_index(conn: &Connection) -> rusqlite::Result<u64> {
    let v: Option<i64> =
        conn.query_row("SELECT v FROM _devdb_state WHERE k = 'applied_index'", [], |r| r.get(0)).optional()?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

fn set_applied_index(conn: &Connection, index: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO _devdb_state(k, v) VALUES ('applied_index', ?1)
         ON CONFLICT(k) DO UPDATE SET v = excluded.v",
        params![to_i64(index)],
    )?;
    Ok(())
}

/// Why a page of the primary's log was not applied.
#[derive(Debug)]
pub enum ApplyError {
    Sql(rusqlite::Error),
    /// The entry does not extend this node's chain: the two logs differ at or before `idx - 1`.
    Diverged {
        idx: u64,
    },
    /// Entries must arrive in order, without holes.
    OutOfOrder {
        expected: u64,
        got: u64,
    },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Sql(e) => write!(f, "{e}"),
            ApplyError::Diverged { idx } => {
                write!(f, "entry {idx} does not extend this node's log: the logs differ at or before {}", idx - 1)
            }
            ApplyError::OutOfOrder { expected, got } => write!(f, "expected log entry {expected}, got {got}"),
        }
    }
}

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        ApplyError::Sql(e)
    }
}

/// Replica: stores and applies entries in one transaction, together with the new applied index.
pub fn apply_entries(conn: &Connection, entries: &[LogEntry]) -> Result<u64, ApplyError> {
    apply_page(conn, entries, None)
}

/// [`apply_entries`], also storing `node` in the same transaction (a term adopted from the
/// primary must never be recorded without the entries that came with it, nor the reverse).
///
/// Each entry must extend this node's chain. Entries this node already applied but never
/// stored (a replica file from before devdb kept the log) are stored without applying them.
pub fn apply_page(conn: &Connection, entries: &[LogEntry], node: Option<&NodeState>) -> Result<u64, ApplyError> {
    let tx = conn.unchecked_transaction()?;
    let mut applied = applied_index(&tx)?;
    let mut end = position(&tx)?;
    let mut insert =
        tx.prepare_cached("INSERT INTO _devdb_log(idx, term, ddl, changeset, hash) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for e in entries {
        if e.idx <= end.index {
            continue;
        }
        if e.idx != end.index + 1 {
            return Err(ApplyError::OutOfOrder { expected: end.index + 1, got: e.idx });
        }
        if Hash::chain(&end.hash, e.idx, e.term, e.ddl.as_deref(), &e.changeset) != e.hash {
            return Err(ApplyError::Diverged { idx: e.idx });
        }
        if e.idx > applied {
            if let Some(ddl) = &e.ddl {
                tx.execute_batch(ddl)?;
            }
            capture::apply(&tx, &e.changeset)?;
            applied = e.idx;
        }
        insert.execute(params![to_i64(e.idx), to_i64(e.term), e.ddl, e.changeset, &e.hash.0[..]])?;
        end = Position { index: e.idx, hash: e.hash };
    }
    drop(insert);
    set_applied_index(&tx, applied)?;
    if let Some(node) = node {
        save_node(&tx, node)?;
    }
    tx.commit()?;
    Ok(applied)
}

/// Makes a former primary's log the starting point of a replica: everything in it counts as
/// applied.
pub fn mark_log_applied(conn: &Connection) -> rusqlite::Result<u64> {
    let index = last_log_index(conn)?;
    set_applied_index(conn, index)?;
    Ok(index)
}

/// Resync: removes every table, view, index and trigger of the user's schema, the log and the
/// applied index, so the node can copy a primary's history from its start. Runs in the
/// caller's transaction, which also records the node's new role.
pub fn wipe(conn: &Connection) -> rusqlite::Result<()> {
    let objects: Vec<(String, String)> = conn
        .prepare(
            "SELECT type, name FROM sqlite_master
             WHERE type IN ('view', 'table') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
               AND name NOT LIKE '\\_devdb\\_%' ESCAPE '\\'
             ORDER BY type = 'table'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (kind, name) in objects {
        // Views come first (the ORDER BY), so no view is ever left naming a dropped table.
        let kind = if kind == "view" { "VIEW" } else { "TABLE" };
        conn.execute_batch(&format!("DROP {kind} IF EXISTS \"{}\"", name.replace('"', "\"\"")))?;
    }
    let has_sequence: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')", [], |r| r.get(0))?;
    if has_sequence {
        conn.execute_batch("DELETE FROM sqlite_sequence")?;
    }
    conn.execute_batch("DELETE FROM _devdb_log; DELETE FROM _devdb_state WHERE k = 'applied_index';")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Role;

    fn entry(prev: &Hash, idx: u64, term: u64, ddl: Option<&str>, changeset: &[u8]) -> LogEntry {
        let hash = Hash::chain(prev, idx, term, ddl, changeset);
        LogEntry { idx, term, ddl: ddl.map(str::to_owned), changeset: changeset.to_vec(), hash }
    }

    #[test]
    fn a_replica_stores_the_chain_and_refuses_an_entry_that_does_not_extend_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = init(&dir.path().join("r.db")).unwrap();
        let first = entry(&Hash::GENESIS, 1, 1, Some("CREATE TABLE t(x)"), b"");
        let second = entry(&first.hash, 2, 1, Some("CREATE TABLE u(x)"), b"");
        assert_eq!(apply_entries(&conn, &[first.clone(), second.clone()]).unwrap(), 2);
        assert_eq!(position(&conn).unwrap(), Position { index: 2, hash: second.hash });
        assert_eq!(read_log(&conn, 0, 10).unwrap(), vec![first.clone(), second]);

        // Another primary's entry 3 (written after a different entry 2) does not fit.
        let other_second = entry(&first.hash, 2, 2, Some("CREATE TABLE v(x)"), b"");
        let foreign = entry(&other_second.hash, 3, 2, Some("CREATE TABLE w(x)"), b"");
        assert!(matches!(apply_entries(&conn, &[foreign]), Err(ApplyError::Diverged { idx: 3 })));
        let gap = entry(&first.hash, 5, 1, None, b"");
        assert!(matches!(apply_entries(&conn, &[gap]), Err(ApplyError::OutOfOrder { expected: 3, got: 5 })));
        assert_eq!(applied_index(&conn).unwrap(), 2, "nothing of a refused page is kept");
    }

    #[test]
    fn a_log_from_before_terms_gets_term_one_and_its_hash_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE _devdb_log(idx INTEGER PRIMARY KEY, ddl TEXT, changeset BLOB NOT NULL);
                 INSERT INTO _devdb_log(ddl, changeset) VALUES ('CREATE TABLE t(x)', x''), (NULL, x'0102');",
            )
            .unwrap();
        }
        let conn = init(&path).unwrap();
        let first = entry(&Hash::GENESIS, 1, 1, Some("CREATE TABLE t(x)"), b"");
        let second = entry(&first.hash, 2, 1, None, &[1, 2]);
        assert_eq!(read_log(&conn, 0, 10).unwrap(), vec![first, second.clone()]);
        assert_eq!(hash_at(&conn, 2).unwrap(), Some(second.hash));
        assert_eq!(append_log(&conn, 2, None, &[3]).unwrap(), 3);
        assert_eq!(hash_at(&conn, 3).unwrap(), Some(Hash::chain(&second.hash, 3, 2, None, &[3])));
    }

    #[test]
    fn a_replica_file_from_before_the_log_copies_the_entries_it_applied_without_applying_them_again() {
        let dir = tempfile::tempdir().unwrap();
        let conn = init(&dir.path().join("old-replica.db")).unwrap();
        // What an older devdb left: entries 1 and 2 applied, none stored.
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO _devdb_state VALUES ('applied_index', 2);").unwrap();
        let first = entry(&Hash::GENESIS, 1, 1, Some("CREATE TABLE t(x)"), b"");
        let second = entry(&first.hash, 2, 1, Some("CREATE INDEX t_x ON t(x)"), b"");
        let third = entry(&second.hash, 3, 1, Some("CREATE TABLE u(y)"), b"");
        // Running entry 1's DDL again would fail (`table t already exists`).
        assert_eq!(apply_entries(&conn, &[first, second.clone(), third.clone()]).unwrap(), 3);
        assert_eq!(position(&conn).unwrap(), Position { index: 3, hash: third.hash });
        let applied: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE name IN ('t_x', 'u') ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(applied, vec!["u".to_owned()], "entry 2 was only stored, entry 3 applied");
    }

    #[test]
    fn wipe_leaves_an_empty_database_that_keeps_its_node_state() {
        let dir = tempfile::tempdir().unwrap();
        let conn = init(&dir.path().join("w.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v); INSERT INTO a(v) VALUES (1);
             CREATE INDEX a_v ON a(v); CREATE VIEW av AS SELECT v FROM a;
             CREATE TRIGGER a_t AFTER INSERT ON a BEGIN SELECT 1; END;
             CREATE TABLE \"odd \"\"name\"(x);",
        )
        .unwrap();
        apply_entries(&conn, &[entry(&Hash::GENESIS, 1, 1, None, b"")]).unwrap();
        save_node(&conn, &NodeState::fresh(Role::Primary, "c".into())).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        wipe(&conn).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        let left: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE '%\\_devdb\\_%' ESCAPE '\\' AND name <> 'sqlite_sequence'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(left, Vec::<String>::new());
        assert_eq!((applied_index(&conn).unwrap(), position(&conn).unwrap().index), (0, 0));
        assert_eq!(load_node(&conn).unwrap().map(|n| n.cluster), Some("c".into()));
    }
}
