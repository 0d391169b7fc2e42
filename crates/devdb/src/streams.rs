//! Hrana streams across HTTP requests: batons and idle expiry.
//!
//! A stream's session is taken out of the table while a request uses it, so a baton can serve
//! one request at a time; a second concurrent use of the same baton is an unknown baton. Every
//! new stream gets a new connection, as with sqld: a connection carries state a client can see
//! (`last_insert_rowid()`, `changes()`, `total_changes()`, temp tables, PRAGMAs, attached
//! databases), and SQLite can reset only some of it, so a closed stream's connection is closed
//! rather than handed to the next stream.
//!
//! A stream belongs to the role the server had when it was opened: after a promotion, a fence or
//! a re-point, its baton is refused (`STREAM_EXPIRED`) and its connection closed, so no
//! transaction spans two roles.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::exec::Session;

/// Streams idle for longer than this are closed (their open transaction rolls back); sqld's
/// figure.
pub const STREAM_IDLE_EXPIRY: Duration = Duration::from_secs(10);
/// How often idle streams are looked for, so an abandoned stream holds its locks for at most
/// `STREAM_IDLE_EXPIRY + REAP_INTERVAL`.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How many idle streams are kept (each holds a connection, two file descriptors). Parking one
/// more closes the least recently used, as the spec lets a server close a stream at any time:
/// a client that leaks streams then loses its own oldest ones, and never shuts out the clients
/// that close theirs.
pub const MAX_OPEN_STREAMS: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum TakeError {
    UnknownBaton,
    RoleChanged,
}

impl TakeError {
    pub fn message(&self) -> &'static str {
        match self {
            TakeError::UnknownBaton => {
                "unknown or expired baton: the stream was closed, expired after 10 s idle, was the least \
                 recently used of 1024 idle streams when another was opened, or is in use"
            }
            TakeError::RoleChanged => {
                "the stream was closed because this server changed role (promoted, fenced or re-pointed); \
                 its open transaction was rolled back"
            }
        }
    }
}

struct Parked {
    session: Session,
    last_used: Instant,
    /// The server's role generation when the stream was opened.
    generation: u64,
}

#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<String, Parked>>,
    /// Streams refused for a role change, waiting to be closed off the async threads.
    stale: Mutex<Vec<Session>>,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The session behind `baton` if it was opened under role `generation`; `None` for a new
    /// stream (the caller opens its connection).
    pub fn take(&self, baton: Option<&str>, generation: u64) -> Result<Option<Session>, TakeError> {
        let mut open = self.lock();
        match baton {
            Some(b) => match open.remove(b) {
                Some(p) if p.generation == generation => Ok(Some(p.session)),
                Some(p) => {
                    self.stale.lock().unwrap_or_else(PoisonError::into_inner).push(p.session);
                    Err(TakeError::RoleChanged)
                }
                None => Err(TakeError::UnknownBaton),
            },
            None => Ok(None),
        }
    }

    /// Keeps a stream opened under role `generation` for a later request; returns its new baton,
    /// and the least recently used stream if it was closed to make room ([`MAX_OPEN_STREAMS`]),
    /// which the caller drops (rolling back) off the async threads.
    pub fn park(&self, session: Session, generation: u64) -> (String, Option<Session>) {
        let baton = random_hex128();
        let mut open = self.lock();
        let evicted = if open.len() >= MAX_OPEN_STREAMS {
            let oldest = open.iter().min_by_key(|(_, p)| p.last_used).map(|(b, _)| b.clone());
            oldest.and_then(|b| open.remove(&b)).map(|p| p.session)
        } else {
            None
        };
        open.insert(baton.clone(), Parked { session, last_used: Instant::now(), generation });
        (baton, evicted)
    }

    /// Removes streams idle for longer than `idle`, and those refused for a role change; the
    /// caller drops them (rolling back).
    pub fn expire(&self, idle: Duration) -> Vec<Session> {
        let mut open = self.lock();
        let now = Instant::now();
        let idle: Vec<String> =
            open.iter().filter(|(_, p)| now.duration_since(p.last_used) > idle).map(|(b, _)| b.clone()).collect();
        let mut out: Vec<Session> = idle.into_iter().filter_map(|b| open.remove(&b).map(|p| p.session)).collect();
        out.append(&mut self.stale.lock().unwrap_or_else(PoisonError::into_inner));
        out
    }

    /// Removes every parked stream (a role change); the caller drops them, which rolls back
    /// their transactions and so releases any write lock they hold.
    pub fn expire_all(&self) -> Vec<Session> {
        let mut out: Vec<Session> = self.lock().drain().map(|(_, p)| p.session).collect();
        out.append(&mut self.stale.lock().unwrap_or_else(PoisonError::into_inner));
        out
    }

    pub fn open_count(&self) -> usize {
        self.lock().len()
    }
}

/// 128 random bits, hex: batons are unguessable so streams cannot be hijacked (also a
/// cluster's id).
pub fn random_hex128() -> String {
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
