//! Process-wide server state shared by request handlers: the node's role and term, the
//! replication index, counters, faults.
//!
//! The role can change while the server runs (promotion, fencing, re-pointing), so it sits
//! behind a lock; every change bumps a generation that expires the streams opened before it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What this node does. Persisted with the data (`db::save_node`), so it survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// Accepts writes and serves its log at its term.
    Primary,
    /// Applies the log of the primary at `primary_url`; refuses writes.
    Replica { primary_url: String },
    /// A former primary that learned of a newer term: it refuses every Hrana request, reads
    /// included, because its data may hold writes the new primary never had.
    Fenced {
        /// The newer term it learned of.
        by_term: u64,
        /// Where that term's primary is, when known.
        primary_url: Option<String>,
    },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica { .. } => "replica",
            Role::Fenced { .. } => "fenced",
        }
    }
}

/// The first log index after which a term's entries begin (the index its primary was
/// promoted at). Indexes go on across terms; what changes is who wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermStart {
    pub term: u64,
    #[serde(with = "crate::proto::u64_as_str")]
    pub from_index: u64,
}

/// The largest term a node accepts from anyone (a follower's poll, a peer's answer) or takes
/// itself: 2^53 − 1, so a term stays exact as a JSON number for every reader (JavaScript's
/// `Number.MAX_SAFE_INTEGER`) and fits SQLite's signed 64-bit INTEGER in `_devdb_log`. A term grows
/// by one per promotion, so only a bug or a hostile caller gets near it; a claim above it is
/// refused rather than believed (it would fence the primary for good and leave no term to
/// promote to).
pub const MAX_TERM: u64 = (1 << 53) - 1;

/// How many peer URLs a node remembers (most recently learned first): enough for any local
/// cluster, and bounded so that a dev database reused across many runs on random ports does
/// not ask an ever longer list of dead addresses.
pub const MAX_PEERS: usize = 32;

/// Everything about a node's place in its cluster that must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Random id chosen by the cluster's first primary and adopted by every replica, so a node
    /// never follows, or is fenced by, a devdb of another cluster that happens to reuse a port.
    /// Empty until a replica first hears from its primary.
    pub cluster: String,
    /// Primary: the term it was elected at. Replica: the term of the primary it follows.
    /// Fenced: the term it held.
    pub term: u64,
    #[serde(flatten)]
    pub role: Role,
    /// Every term of this history, oldest first (a replica copies its primary's).
    pub terms: Vec<TermStart>,
    /// Other nodes of the cluster this node has heard of, most recent first.
    pub peers: Vec<String>,
}

impl NodeState {
    /// A node whose file has no state yet: a primary opens term 1, a replica learns its term
    /// and cluster from its primary.
    pub fn fresh(role: Role, cluster: String) -> Self {
        let primary = role == Role::Primary;
        Self {
            cluster,
            term: u64::from(primary),
            role,
            terms: if primary { vec![TermStart { term: 1, from_index: 0 }] } else { Vec::new() },
            peers: Vec::new(),
        }
    }

    /// Remembers `url` as a peer (never `own_url`); true if the list changed.
    pub fn add_peer(&mut self, url: &str, own_url: &str) -> bool {
        let url = url.trim_end_matches('/');
        if url.is_empty() || url == own_url || self.peers.iter().any(|p| p == url) {
            return false;
        }
        self.peers.insert(0, url.to_owned());
        self.peers.truncate(MAX_PEERS);
        true
    }

    /// The highest term this node knows exists.
    pub fn known_term(&self) -> u64 {
        match self.role {
            Role::Fenced { by_term, .. } => by_term.max(self.term),
            _ => self.term,
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
    node: RwLock<NodeState>,
    /// Bumped on every role change: streams opened under an older generation are expired,
    /// and long-polls wake up to look at the new role.
    pub generation: watch::Sender<u64>,
    /// Primary: committed log entries. Replica: the primary index applied so far. Watchable so
    /// the primary's log endpoint can long-poll.
    pub index: watch::Sender<u64>,
    /// Replica: why it stopped following (its log and the primary's differ). Not persisted:
    /// the follower finds it again on its first pull after a restart.
    diverged: Mutex<Option<String>>,
    pub stats: Stats,
    pub faults: Mutex<Faults>,
}

impl Shared {
    /// A node with no history yet (in-process tests and `devdb::sim`): see [`NodeState::fresh`].
    pub fn new(role: Role, index: u64, faults: Faults) -> Self {
        Self::with_node(NodeState::fresh(role, String::new()), index, faults)
    }

    pub fn with_node(node: NodeState, index: u64, faults: Faults) -> Self {
        Self {
            node: RwLock::new(node),
            generation: watch::Sender::new(0),
            index: watch::Sender::new(index),
            diverged: Mutex::new(None),
            stats: Stats::default(),
            faults: Mutex::new(faults),
        }
    }

    pub fn node(&self) -> NodeState {
        self.node.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn role(&self) -> Role {
        self.node.read().unwrap_or_else(PoisonError::into_inner).role.clone()
    }

    pub fn term(&self) -> u64 {
        self.node.read().unwrap_or_else(PoisonError::into_inner).term
    }

    /// The term to stamp on a write, or `None` when this node may not write.
    pub fn writable_term(&self) -> Option<u64> {
        let node = self.node.read().unwrap_or_else(PoisonError::into_inner);
        (node.role == Role::Primary).then_some(node.term)
    }

    /// Replaces the node's state and expires every stream opened before (the caller has
    /// already persisted it, or is about to in the transaction it holds).
    pub fn set_node(&self, node: NodeState) {
        *self.node.write().unwrap_or_else(PoisonError::into_inner) = node;
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Changes the node's state in place without a role change (peers, adopted term).
    pub fn update_node<T>(&self, change: impl FnOnce(&mut NodeState) -> T) -> T {
        change(&mut self.node.write().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn current_generation(&self) -> u64 {
        *self.generation.borrow()
    }

    pub fn diverged(&self) -> Option<String> {
        self.diverged.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn set_diverged(&self, why: Option<String>) {
        *self.diverged.lock().unwrap_or_else(PoisonError::into_inner) = why;
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

    /// Sets the index to what the database says, even backwards (after a resync wiped it).
    pub fn reset_index(&self, to: u64) {
        self.index.send_replace(to);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_state_round_trips_through_its_stored_form() {
        let mut node = NodeState::fresh(Role::Primary, "c1".into());
        node.role = Role::Fenced { by_term: 3, primary_url: Some("http://b".into()) };
        node.terms.push(TermStart { term: 2, from_index: 17 });
        let stored = serde_json::to_string(&node).unwrap();
        assert!(stored.contains(r#""role":"fenced""#) && stored.contains(r#""from_index":"17""#), "{stored}");
        assert_eq!(serde_json::from_str::<NodeState>(&stored).unwrap(), node);
        assert_eq!(node.known_term(), 3);
    }

    #[test]
    fn peers_are_bounded_deduplicated_and_never_include_the_node_itself() {
        let mut node = NodeState::fresh(Role::Primary, "c".into());
        assert!(!node.add_peer("http://me", "http://me"));
        assert!(node.add_peer("http://a/", "http://me"));
        assert!(!node.add_peer("http://a", "http://me"));
        for i in 0..MAX_PEERS {
            node.add_peer(&format!("http://p{i}"), "http://me");
        }
        assert_eq!(node.peers.len(), MAX_PEERS);
        assert_eq!(node.peers[0], format!("http://p{}", MAX_PEERS - 1), "most recent first");
        assert!(!node.peers.contains(&"http://a".to_owned()), "the oldest is forgotten");
    }
}
