//! `changes()` and `total_changes()` as a stream sees them: without devdb's own log inserts.
//!
//! On the primary, every statement that writes is followed, on the same connection and in the
//! same transaction, by devdb's `INSERT INTO _devdb_log`. SQLite counts that insert like any
//! other: it sets `changes()` to 1 and adds 1 to `total_changes()`, and has no API to undo it.
//! So each connection gets its own `changes()` and `total_changes()` SQL functions (an
//! application function of the same name overrides SQLite's built-in one) that subtract what
//! devdb's own writes did. `last_insert_rowid()` needs no override: SQLite can set it, and
//! `db::append_log` restores it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};

/// SQLite's own counters, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Raw {
    changes: u64,
    total: u64,
}

impl Raw {
    fn of(conn: &Connection) -> Self {
        Self { changes: conn.changes(), total: conn.total_changes() }
    }
}

#[derive(Debug, Default)]
struct Hidden {
    /// How much devdb's own writes added to `total_changes()` over the connection's life.
    total: u64,
    /// After devdb's last own write: the `changes()` a client should see, and SQLite's counters
    /// as that write left them. Once SQLite's counters move (a client INSERT, UPDATE or DELETE
    /// sets `changes()`, even to 0), the real value is the client's again.
    last: Option<(u64, Raw)>,
}

/// Installed on a connection; shared with its SQL functions.
#[derive(Debug, Default)]
pub struct ClientCounters {
    hidden: Mutex<Hidden>,
}

impl ClientCounters {
    /// Overrides `changes()` and `total_changes()` on `conn`.
    pub fn install(conn: &Connection) -> rusqlite::Result<Arc<Self>> {
        let counters = Arc::new(Self::default());
        let mine = counters.clone();
        conn.create_scalar_function("changes", 0, FunctionFlags::SQLITE_UTF8, move |ctx| {
            let raw = raw_of(ctx)?;
            Ok(clamp(mine.changes(raw)))
        })?;
        let mine = counters.clone();
        conn.create_scalar_function("total_changes", 0, FunctionFlags::SQLITE_UTF8, move |ctx| {
            let raw = raw_of(ctx)?;
            Ok(clamp(raw.total.saturating_sub(mine.lock().total)))
        })?;
        Ok(counters)
    }

    /// Runs devdb's own write `f` on `conn` and hides what it did to the counters.
    pub fn hide<T>(&self, conn: &Connection, f: impl FnOnce() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let before = Raw::of(conn);
        // What the client sees now, which is not SQLite's count right after another hidden write.
        let visible = self.changes(before);
        let out = f()?;
        let after = Raw::of(conn);
        let mut hidden = self.lock();
        hidden.total += after.total.saturating_sub(before.total);
        hidden.last = Some((visible, after));
        Ok(out)
    }

    /// Counts from zero again, as a new connection would: a connection kept for the next stream
    /// (`sim`) shows that stream `changes()` and `total_changes()` of 0 until it writes.
    pub fn restart(&self, conn: &Connection) {
        let raw = Raw::of(conn);
        let mut hidden = self.lock();
        hidden.total = raw.total;
        hidden.last = Some((0, raw));
    }

    fn changes(&self, raw: Raw) -> u64 {
        match self.lock().last {
            Some((visible, left)) if left == raw => visible,
            _ => raw.changes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Hidden> {
        self.hidden.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn raw_of(ctx: &Context<'_>) -> rusqlite::Result<Raw> {
    // SAFETY: the connection reference is used only during this call, on the calling thread.
    let conn = unsafe { ctx.get_connection() }?;
    Ok(Raw::of(&conn))
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(conn: &Connection) -> (i64, i64) {
        conn.query_row("SELECT changes(), total_changes()", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap()
    }

    #[test]
    fn a_hidden_write_leaves_both_counters_as_the_client_left_them() {
        let conn = Connection::open_in_memory().unwrap();
        let hidden = ClientCounters::install(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t(a); CREATE TABLE own(x); INSERT INTO t VALUES (1), (2), (3)").unwrap();
        assert_eq!(counters(&conn), (3, 3));

        hidden.hide(&conn, || conn.execute("INSERT INTO own VALUES (1)", [])).unwrap();
        assert_eq!(counters(&conn), (3, 3), "devdb's own insert is invisible");

        // A client statement that changes nothing still sets changes() to 0.
        conn.execute("UPDATE t SET a = a WHERE a > 10", []).unwrap();
        hidden.hide(&conn, || conn.execute("INSERT INTO own VALUES (2)", [])).unwrap();
        assert_eq!(counters(&conn), (0, 3));

        conn.execute("DELETE FROM t WHERE a < 3", []).unwrap();
        assert_eq!(counters(&conn), (2, 5));
        hidden.hide(&conn, || conn.execute("INSERT INTO own VALUES (3)", [])).unwrap();
        assert_eq!(counters(&conn), (2, 5));
        let raw = Raw::of(&conn);
        assert_eq!((raw.changes, raw.total), (1, 8), "SQLite itself counted all three own inserts");
    }

    #[test]
    fn triggers_see_their_own_counts_and_their_statement_sees_the_clients() {
        let conn = Connection::open_in_memory().unwrap();
        let hidden = ClientCounters::install(&conn).unwrap();
        conn.execute_batch(
            "CREATE TABLE t(a); CREATE TABLE u(b); CREATE TABLE own(x); CREATE TABLE seen(v);
             CREATE TRIGGER tr AFTER INSERT ON t BEGIN
                 INSERT INTO u VALUES (1);
                 UPDATE u SET b = b WHERE 0;
                 INSERT INTO seen VALUES (changes());
             END;
             INSERT INTO u VALUES (5), (6), (7);",
        )
        .unwrap();
        hidden.hide(&conn, || conn.execute("INSERT INTO own VALUES (1)", [])).unwrap();
        // The second row reads changes() after the first row's trigger has written.
        conn.execute("INSERT INTO t VALUES (1), (changes())", []).unwrap();
        let column = |sql: &str| -> Vec<i64> {
            conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(column("SELECT a FROM t"), [1, 3], "the client's last count, as SQLite alone gives it");
        assert_eq!(column("SELECT v FROM seen"), [0, 0], "inside the trigger: its own UPDATE's count");
    }
}
