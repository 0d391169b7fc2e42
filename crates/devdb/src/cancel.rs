//! Stopping statements nobody waits for any more: a Hrana request whose client went away (hyper
//! drops the handler's future), and every request at shutdown.
//!
//! A request's statements run on a blocking thread that dropping the handler's future does not
//! stop, so a runaway statement would otherwise run for ever: holding SQLite's write lock (every
//! other writer then gets `SQLITE_BUSY`) and keeping the process alive after SIGTERM. As sqld
//! does, every stream's connection has a progress handler that checks a flag
//! ([`crate::exec::Session::new`]); the handler's [`InFlight`] guard raises it when it is
//! dropped before the answer was ready, and [`Requests::interrupt_all`] raises every one.

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
