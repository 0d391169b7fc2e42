//! Row-level change capture (primary) and changeset apply (replica) with SQLite's session extension.
//!
//! rusqlite's safe `session` module needs libclang at build time and does not expose
//! `sqlite3session_object_config`, which is required to record tables without a PRIMARY KEY
//! (by rowid). The bundled SQLite is built with the extension (see build.rs), so the few calls
//! needed are made here through `rusqlite::ffi`, each wrapped so nothing unsafe leaks out.

pub use imp::{Capture, HookAnchor, apply};

/// Whether this build has SQLite's session extension (see build.rs); `serve` refuses to start
/// without it.
pub const AVAILABLE: bool = cfg!(devdb_session);

/// Internal tables (replication log and state) are never captured.
pub const INTERNAL_PREFIX: &str = "_devdb_";

/// Restores `last_insert_rowid()` after the server's own log insert, so clients see their own.
pub fn set_last_insert_rowid(conn: &rusqlite::Connection, rowid: i64) {
    // SAFETY: plain setter on a live handle.
    unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(conn.handle(), rowid) };
}

#[cfg(devdb_session)]
mod imp {
    use std::ffi::{CStr, c_char, c_int, c_void};
    use std::marker::PhantomData;
    use std::ptr;

    use rusqlite::{Connection, ffi};

    use super::INTERNAL_PREFIX;

    fn check(rc: c_int) -> rusqlite::Result<()> {
        if rc == ffi::SQLITE_OK { Ok(()) } else { Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)) }
    }

    unsafe extern "C" fn capture_table(_ctx: *mut c_void, name: *const c_char) -> c_int {
        if name.is_null() {
            return 0;
        }
        // SAFETY: SQLite passes a NUL-terminated table name valid for the duration of the call.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        c_int::from(!name.starts_with(INTERNAL_PREFIX.as_bytes()))
    }

    /// Records every change made to the `main` database while it is alive.
    pub struct Capture<'conn> {
        session: *mut ffi::sqlite3_session,
        _conn: PhantomData<&'conn Connection>,
    }

    impl<'conn> Capture<'conn> {
        pub fn start(conn: &'conn Connection) -> rusqlite::Result<Self> {
            let mut session = ptr::null_mut();
            // SAFETY: the handle is valid while `conn` is borrowed, and `Capture` cannot outlive it.
            check(unsafe { ffi::sqlite3session_create(conn.handle(), c"main".as_ptr(), &mut session) })?;
            let capture = Capture { session, _conn: PhantomData };
            let mut on: c_int = 1;
            // SAFETY: `session` is a live session; the option takes a pointer to an int. It must be
            // set before any table is attached, so that rowid tables are recorded too.
            check(unsafe {
                ffi::sqlite3session_object_config(
                    session,
                    ffi::SQLITE_SESSION_OBJCONFIG_ROWID,
                    (&mut on as *mut c_int).cast(),
                )
            })?;
            // SAFETY: the filter is a plain function that only reads its arguments.
            unsafe { ffi::sqlite3session_table_filter(session, Some(capture_table), ptr::null_mut()) };
            // SAFETY: a NULL table name attaches every table, including ones created later.
            check(unsafe { ffi::sqlite3session_attach(session, ptr::null()) })?;
            Ok(capture)
        }

        /// The changes recorded so far, as a changeset (empty when nothing changed).
        pub fn changeset(&self) -> rusqlite::Result<Vec<u8>> {
            let mut n: c_int = 0;
            let mut buf: *mut c_void = ptr::null_mut();
            // SAFETY: `session` is live; SQLite allocates `buf`, which is freed below.
            let rc = unsafe { ffi::sqlite3session_changeset(self.session, &mut n, &mut buf) };
            let out = match usize::try_from(n) {
                Ok(len) if rc == ffi::SQLITE_OK && !buf.is_null() && len > 0 => {
                    // SAFETY: SQLite reports `n` valid bytes at `buf`.
                    unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }.to_vec()
                }
                _ => Vec::new(),
            };
            // SAFETY: `buf` came from SQLite's allocator (or is NULL, which is allowed).
            unsafe { ffi::sqlite3_free(buf) };
            check(rc)?;
            Ok(out)
        }
    }

    impl Drop for Capture<'_> {
        fn drop(&mut self) {
            // SAFETY: created in `start`, deleted exactly once, before the connection can close.
            unsafe { ffi::sqlite3session_delete(self.session) };
        }
    }

    unsafe extern "C" fn on_conflict(
        _ctx: *mut c_void,
        conflict: c_int,
        _iter: *mut ffi::sqlite3_changeset_iter,
    ) -> c_int {
        // The replica mirrors the primary: the primary's row wins (a DDL replay such as
        // CREATE TABLE AS SELECT may already have produced a row with other values).
        match conflict {
            ffi::SQLITE_CHANGESET_DATA | ffi::SQLITE_CHANGESET_CONFLICT => ffi::SQLITE_CHANGESET_REPLACE,
            _ => ffi::SQLITE_CHANGESET_OMIT,
        }
    }

    /// Applies a changeset made by [`Capture`] on another database with the same schema.
    pub fn apply(conn: &Connection, changeset: &[u8]) -> rusqlite::Result<()> {
        if changeset.is_empty() {
            return Ok(());
        }
        let len = c_int::try_from(changeset.len())
            .map_err(|_| rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_TOOBIG), None))?;
        // SAFETY: SQLite only reads the buffer (the API takes `void*` for historical reasons), and the
        // conflict handler is a plain function.
        check(unsafe {
            ffi::sqlite3changeset_apply(
                conn.handle(),
                len,
                changeset.as_ptr().cast_mut().cast(),
                None,
                Some(on_conflict),
                ptr::null_mut(),
            )
        })
    }

    /// Keeps a session (and so SQLite's pre-update hook) installed on a primary connection for its
    /// whole life. SQLite decides at prepare time whether `DELETE FROM t` may use the truncate
    /// optimization, which skips the hook and so would never reach the changeset; with the hook
    /// always present, every statement is compiled to report its row changes. It records nothing
    /// itself (no table attached). It must be dropped before its connection: [`crate::exec::Session`]
    /// declares it first.
    pub struct HookAnchor(*mut ffi::sqlite3_session);

    // SAFETY: the session is only used through the connection it belongs to, which moves between
    // threads together with it and is never used from two threads at once.
    unsafe impl Send for HookAnchor {}

    impl HookAnchor {
        pub fn install(conn: &Connection) -> rusqlite::Result<Self> {
            let mut session = ptr::null_mut();
            // SAFETY: valid handle; see the type's documentation for the lifetime rule.
            check(unsafe { ffi::sqlite3session_create(conn.handle(), c"main".as_ptr(), &mut session) })?;
            Ok(Self(session))
        }
    }

    impl Drop for HookAnchor {
        fn drop(&mut self) {
            // SAFETY: created in `install`, deleted once, while its connection is still open.
            unsafe { ffi::sqlite3session_delete(self.0) };
        }
    }
}

/// Without the session extension nothing can be captured or applied; every entry point fails.
#[cfg(not(devdb_session))]
mod imp {
    use rusqlite::{Connection, ffi};

    fn missing() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_MISUSE),
            Some("devdb was built without SQLite's session extension (see build.rs)".into()),
        )
    }

    pub struct Capture<'conn>(std::marker::PhantomData<&'conn Connection>);

    impl<'conn> Capture<'conn> {
        pub fn start(_conn: &'conn Connection) -> rusqlite::Result<Self> {
            Err(missing())
        }

        pub fn changeset(&self) -> rusqlite::Result<Vec<u8>> {
            Err(missing())
        }
    }

    pub struct HookAnchor;

    impl HookAnchor {
        pub fn install(_conn: &Connection) -> rusqlite::Result<Self> {
            Err(missing())
        }
    }

    pub fn apply(_conn: &Connection, _changeset: &[u8]) -> rusqlite::Result<()> {
        Err(missing())
    }
}
