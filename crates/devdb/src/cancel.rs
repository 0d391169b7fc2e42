//! Stopping statements nobody waits for any more: a Hrana request whose client went away (hyper
//! drops the handler's future), and every request at shutdown.
//!
//! A request's statements run on a blocking thread that dropping the handler's future does not
//! stop, so a runaway statement would otherwise run for ever: holding SQLite's write lock (every
//! other writer then gets `SQLITE_BUSY`) and keeping the process alive after SIGTERM. As sqld
//! does, every stream's connection has a progress handler that checks a flag
//! ([`crate::exec::Session::new`]); the handler's [`InFlight`] guard raises it when it is
//! dropped before the answer was ready, and [`Requests::interrupt_all`] raises every one.
//!
//! Not rusqlite's `InterruptHandle` (`sqlite3_interrupt`): SQLite clears that interrupt when a
//! statement starts on a connection with none running, so a cancel landing before the
//! statement's first step (the connection being opened, a request begun during shutdown, the
//! gap between two requests) would be lost and the statement run to its end; the flag stays
//! raised until the next request attaches (`tests::a_cancel_before_the_statement_starts_stops_it`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::exec::Session;

/// The requests being answered, so that shutdown can stop them.
#[derive(Default)]
pub struct Requests {
    next: AtomicU64,
    running: Mutex<HashMap<u64, Cancel>>,
    /// Set at shutdown: requests that begin afterwards are cancelled from the start.
    closing: AtomicBool,
}

impl Requests {
    /// Registers a request; its statements are interrupted if the guard is dropped before
    /// [`InFlight::answered`].
    pub fn begin(&self) -> InFlight<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = Cancel::default();
        self.lock().insert(id, cancel.clone());
        if self.closing.load(Ordering::SeqCst) {
            cancel.cancel();
        }
        InFlight { requests: self, id, cancel, answered: false }
    }

    /// Interrupts every request's statements, now and from now on (shutdown).
    pub fn interrupt_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for cancel in self.lock().values() {
            cancel.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Cancel>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One request being answered (see [`Requests::begin`]).
pub struct InFlight<'a> {
    requests: &'a Requests,
    id: u64,
    cancel: Cancel,
    answered: bool,
}

impl InFlight<'_> {
    /// What the blocking work attaches its session to.
    pub fn cancel(&self) -> Cancel {
        self.cancel.clone()
    }

    /// The answer is ready: dropping the guard no longer interrupts anything.
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.cancel.cancel();
        }
        self.requests.lock().remove(&self.id);
    }
}

/// A request's cancellation, shared between its handler and the blocking work that runs its
/// statements; the session is attached once that work has it (it may open the connection).
#[derive(Clone, Default)]
pub struct Cancel(Arc<Mutex<CancelState>>);

#[derive(Default)]
struct CancelState {
    cancelled: bool,
    /// The flag the session's progress handler reads.
    session: Option<Arc<AtomicBool>>,
}

impl Cancel {
    fn lock(&self) -> std::sync::MutexGuard<'_, CancelState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Interrupts the attached session's statements, or the session's once it is attached.
    pub fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        if let Some(flag) = &state.session {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Ties `session` to this request: its statements run until the request is cancelled
    /// (clearing what an earlier request of the same stream left).
    pub fn attach(&self, session: &Session) {
        let mut state = self.lock();
        let flag = session.interrupt_flag();
        flag.store(state.cancelled, Ordering::Relaxed);
        state.session = Some(flag);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rusqlite::Connection;

    use super::*;

    /// About a second of work or more: long enough that SQLite's progress handler runs, short
    /// enough that a statement the cancel missed ends and fails the test rather than hanging it.
    const LONG: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) \
                        SELECT count(*) FROM c";

    fn interrupted(session: &Session) -> bool {
        let outcome = session.conn.query_row(LONG, [], |row| row.get::<_, i64>(0));
        matches!(outcome, Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::OperationInterrupted)
    }

    #[test]
    fn a_cancel_before_the_statement_starts_stops_it() {
        let session = Session::new(Connection::open_in_memory().unwrap(), false).unwrap();
        let cancel = Cancel::default();
        cancel.attach(&session);
        // No statement is running on the connection when the request is cancelled.
        cancel.cancel();
        assert!(interrupted(&session), "a statement started after its request was cancelled ran to its end");

        // A request begun during shutdown is cancelled before its session is attached.
        let requests = Requests::default();
        requests.interrupt_all();
        let in_flight = requests.begin();
        in_flight.cancel().attach(&session);
        assert!(interrupted(&session), "a request begun during shutdown ran its statement");
    }

    #[test]
    fn the_next_request_of_the_stream_runs_after_a_cancelled_one() {
        let session = Session::new(Connection::open_in_memory().unwrap(), false).unwrap();
        let first = Cancel::default();
        first.attach(&session);
        first.cancel();
        assert!(interrupted(&session));
        Cancel::default().attach(&session);
        let n: i64 =
            session.conn.query_row("SELECT count(*) FROM (SELECT 1 UNION SELECT 2)", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
    }
}
