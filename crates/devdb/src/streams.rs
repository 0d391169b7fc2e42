//! Hrana streams across HTTP requests: batons and idle expiry.
//!
//! A stream's session is taken out of the table while a request uses it, so a baton can serve
//! one request at a time; a second concurrent use of the same baton is an unknown baton. Every
//! new stream gets a new connection, as with sqld: a connection carries state a client can see
//! (`last_insert_rowid()`, `changes()`, `total_changes()`, temp tables, PRAGMAs, attached
//! databases), and SQLite can reset only some of it, so a closed stream's connection is closed
//! rather than handed to the next stream.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::exec::Session;

/// Streams idle for longer than this are closed (their open transaction rolls back); sqld's
/// figure.
pub const STREAM_IDLE_EXPIRY: Duration = Duration::from_secs(10);
/// How often idle streams are looked for, so an abandoned stream holds its locks for at most
/// `STREAM_IDLE_EXPIRY + REAP_INTERVAL`.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);
const MAX_OPEN_STREAMS: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum TakeError {
    UnknownBaton,
    TooManyStreams,
}

impl TakeError {
    pub fn message(&self) -> &'static str {
        match self {
            TakeError::UnknownBaton => {
                "unknown or expired baton: the stream was closed, expired after 10 s idle, or is in use"
            }
            TakeError::TooManyStreams => "too many open streams",
        }
    }
}

struct Parked {
    session: Session,
    last_used: Instant,
}

#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<String, Parked>>,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The session behind `baton`; `None` for a new stream (the caller opens its connection)
    /// if another one may be opened.
    pub fn take(&self, baton: Option<&str>) -> Result<Option<Session>, TakeError> {
        let mut open = self.lock();
        match baton {
            Some(b) => open.remove(b).map(|p| Some(p.session)).ok_or(TakeError::UnknownBaton),
            None if open.len() >= MAX_OPEN_STREAMS => Err(TakeError::TooManyStreams),
            None => Ok(None),
        }
    }

    /// Keeps a stream open for a later request; returns its new baton.
    pub fn park(&self, session: Session) -> String {
        let baton = new_baton();
        self.lock().insert(baton.clone(), Parked { session, last_used: Instant::now() });
        baton
    }

    /// Removes streams idle for longer than `idle`; the caller drops them (rolling back).
    pub fn expire(&self, idle: Duration) -> Vec<Session> {
        let mut open = self.lock();
        let now = Instant::now();
        let stale: Vec<String> =
            open.iter().filter(|(_, p)| now.duration_since(p.last_used) > idle).map(|(b, _)| b.clone()).collect();
        stale.into_iter().filter_map(|b| open.remove(&b).map(|p| p.session)).collect()
    }

    pub fn open_count(&self) -> usize {
        self.lock().len()
    }
}

/// 128 random bits, hex: batons are unguessable so streams cannot be hijacked.
fn new_baton() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to a time-derived value (still unique per process).
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
