//! Process-wide server state shared by request handlers: role, replication index, counters, faults.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica { primary_url: String },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica { .. } => "replica",
        }
    }
}

/// Injected faults, changeable at runtime through `POST /_devdb/faults`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Faults {
    /// Added before answering every Hrana request (stands for a distant region).
    pub latency_ms: u64,
    /// Replica only: how long replicated changes wait before they are applied.
    pub lag_ms: u64,
    /// Every Hrana request answers HTTP 503.
    pub fail_requests: bool,
}

/// A partial update of [`Faults`]: absent fields keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    pub latency_ms: Option<u64>,
    pub lag_ms: Option<u64>,
    pub fail_requests: Option<bool>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub pipelines: AtomicU64,
    pub cursors: AtomicU64,
    pub statements: AtomicU64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

pub struct Shared {
    pub role: Role,
    /// Primary: committed log entries. Replica: the primary index applied so far. Watchable so
    /// the primary's log endpoint can long-poll.
    pub index: watch::Sender<u64>,
    pub stats: Stats,
    pub faults: Mutex<Faults>,
}

impl Shared {
    pub fn new(role: Role, index: u64, faults: Faults) -> Self {
        Self { role, index: watch::Sender::new(index), stats: Stats::default(), faults: Mutex::new(faults) }
    }

    pub fn index(&self) -> u64 {
        *self.index.borrow()
    }

    /// Moves the index forward (never back: commits can be observed out of order).
    pub fn advance_index(&self, to: u64) {
        self.index.send_if_modified(|cur| {
            if to > *cur {
                *cur = to;
                true
            } else {
                false
            }
        });
    }

    pub fn faults(&self) -> Faults {
        match self.faults.lock() {
            Ok(f) => *f,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub fn patch_faults(&self, patch: &FaultsPatch) -> Faults {
        let mut f = match self.faults.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(v) = patch.latency_ms {
            f.latency_ms = v;
        }
        if let Some(v) = patch.lag_ms {
            f.lag_ms = v;
        }
        if let Some(v) = patch.fail_requests {
            f.fail_requests = v;
        }
        *f
    }
}
