//! The read cache for public queries: a small in-isolate memory tier in front of Workers KV,
//! and the invalidation floors that keep both tiers from serving what a change replaced.
//!
//! Staleness contract (docs/edge-data-path.md):
//! - an entry lives at most `KV_TTL_SECONDS` from its fill, in either tier (an isolate keeps a
//!   copy `MEMORY_TTL_MS` at most), and records the [`CacheVersion`] its rows are at least as
//!   new as (the read's index probe, `db::pipeline`, and the answering node's term);
//! - a change leaves a **floor** — the change's [`CacheVersion`] — on every scope it touches
//!   (the note, and the whole public feed), in this isolate at once and in KV for
//!   `FLOOR_TTL_SECONDS`. An entry below its scope's floor is never served, and a read below
//!   the floor is never stored, so a fill from a lagging replica cannot undo an invalidation.
//!   Floors live in their own KV keys, which fills never write: KV is last-write-wins without
//!   compare-and-set, so a floor stored inside the entry could be overwritten by an old fill;
//! - a client whose last write is newer than an entry skips it: the author of a change never
//!   sees the stale value.

use std::collections::HashMap;

use crate::datapath::{History, Requirement};
use crate::notes::PageRequest;

pub const MEMORY_TTL_MS: f64 = 5_000.0;
pub const MEMORY_CAPACITY: usize = 256;
/// KV's minimum `expirationTtl`.
pub const KV_TTL_SECONDS: u32 = 60;
/// How long a floor is kept: longer than any entry it guards can live — filled at most the
/// tolerated replica lag after the change (`MAX_TOLERATED_LAG_SECONDS`), then alive for
/// `KV_TTL_SECONDS`, then cached at other edges for up to KV's 60 s `cacheTtl`.
pub const FLOOR_TTL_SECONDS: u32 = 300;
/// The replica lag the floors are sized for: a replica further behind than this could, after
/// the floor has expired, refill a value older than a change it has not applied yet.
pub const MAX_TOLERATED_LAG_SECONDS: u32 = FLOOR_TTL_SECONDS - 2 * KV_TTL_SECONDS;
/// An isolate refills a KV key at most this often, so no key is written per request.
const KV_REFILL_INTERVAL_MS: f64 = 10_000.0;
/// KV takes at most one write per second to a key (platform limit); a second one is refused.
pub const KV_WRITE_INTERVAL_MS: f64 = 1_000.0;

/// Where in the database's history rows were read or a change was made: the term of the node
/// that answered (docs/failover.md; 0 when unknown: Turso and sqld send none, and a change's
/// floor takes the primary record's term then, if the isolate has one) and the replication
/// index.
///
/// A partial order, as a read-your-writes token's ([`Requirement::met_by`]): rows at `(t, i)`
/// hold a change at `(t′, i′)` when `i ≥ i′` and `t ≥ t′` — by the index alone when either
/// term is unknown, as before terms were recorded. The index alone cannot tell two
/// histories apart: after a failover the new term's indexes carry on from the promoted
/// replica's, below where the old primary got to, and rows read from the old primary (with
/// the writes the failover lost) passed a new change's floor at a lower index (review finding).
/// The term alone is not enough either: a replica follows the new primary, and reports its
/// term, before it has applied the old term's last changes (a second review finding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheVersion {
    pub term: u64,
    pub index: u64,
}

impl CacheVersion {
    /// Every history's first term: a floor of it (or of no known term) is stored as the plain
    /// index the release before wrote, and read back as of no known term.
    pub const FIRST_TERM: u64 = 1;
    /// Held by nothing: the floor of a change whose index is unknown.
    pub const MAX: Self = Self { term: u64::MAX, index: u64::MAX };

    /// `index` under `term` (none: unknown, 0).
    pub fn new(term: Option<u64>, index: u64) -> Self {
        Self { term: term.unwrap_or(0), index }
    }

    /// The term, if known.
    pub fn known_term(&self) -> Option<u64> {
        (self.term > 0).then_some(self.term)
    }

    /// Whether rows at this version hold the change at `change` (see the type).
    pub fn holds(&self, change: &Self) -> bool {
        Requirement { index: change.index, term: change.known_term() }.met_by(Some(self.index), self.known_term())
    }

    /// The least version that holds both changes: what a floor becomes when a second change
    /// meets it. It may ask more than either (the higher term at the higher index: slower,
    /// never older).
    pub fn join(self, other: Self) -> Self {
        Self { term: self.term.max(other.term), index: self.index.max(other.index) }
    }
}

/// A cached query result: the JSON body the API answered, where in the history it was read, and
/// when it was filled (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedQuery {
    pub version: CacheVersion,
    pub filled_at_ms: i64,
    pub body: Vec<u8>,
}

impl CachedQuery {
    /// `<term>.<index>.<filled at>\n<body>`: small, and the body stays readable in the KV
    /// dashboard.
    pub fn encode(&self) -> Vec<u8> {
        let CacheVersion { term, index } = self.version;
        let mut bytes = format!("{term}.{index}.{}\n", self.filled_at_ms).into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let newline = bytes.iter().position(|b| *b == b'\n')?;
        let mut head = std::str::from_utf8(&bytes[..newline]).ok()?.split('.');
        let (term, index, filled_at_ms) = (head.next()?.parse().ok()?, head.next()?.parse().ok()?, head.next()?);
        let filled_at_ms = filled_at_ms.parse().ok()?;
        if head.next().is_some() {
            return None;
        }
        Some(Self { version: CacheVersion { term, index }, filled_at_ms, body: bytes[newline + 1..].to_vec() })
    }

    /// When the entry's life ends in any tier: [`KV_TTL_SECONDS`] after its fill. KV may hand
    /// out a copy a little longer (a key is deleted after its TTL, and other locations cache a
    /// read for up to 60 s), and an isolate would keep what it read for its own 5 s more: both
    /// are held to this (review finding: a copy read at 59.9 s was served at 63 s).
    pub fn expires_at_ms(&self) -> f64 {
        self.filled_at_ms as f64 + f64::from(KV_TTL_SECONDS) * 1000.0
    }

    /// Whether the rows are of `history` (the primary record's; without one, of the only history
    /// there is): read in its current term (or a later one the isolate has not heard of), or in
    /// an earlier term the history names, at an index that term kept. Read from a primary past
    /// where the next term began, they hold writes the failover lost; of a term the history does
    /// not name (a branch a later promotion left behind: a fenced primary promoted again), it is
    /// not known where they part from it, so none is taken (a review finding).
    /// Rows of no known term (Turso, sqld) cannot be judged and are taken as of it.
    pub fn is_of(&self, history: Option<History<'_>>) -> bool {
        let CacheVersion { term, index } = self.version;
        if self.version.known_term().is_none() {
            return true;
        }
        history.is_none_or(|history| history.holds_rows_of(term, index))
    }

    /// Usable by a client whose writes ask `requirement` of a read (its read-your-writes token).
    pub fn is_fresh_for(&self, requirement: Option<&Requirement>) -> bool {
        requirement.is_none_or(|requirement| requirement.met_by(Some(self.version.index), self.version.known_term()))
    }
}

/// What a change can make stale: one note, or the public feed (every page at once, since a
/// change to one note moves every later page).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Note(String),
    Feed,
}

impl Scope {
    /// The KV key of this scope's floor.
    pub fn floor_key(&self) -> String {
        match self {
            Self::Note(id) => format!("v1/floor/note/{id}"),
            Self::Feed => "v1/floor/feed".to_string(),
        }
    }
}

/// A cacheable query: its KV key and the scope whose floor guards it.
///
/// Entries are under keys of their own release: v3 of a public note and v5 of a feed page carry
/// the term and the fill time (v5 also the cursor signing key); the release before reads its
/// own keys and never these, during a gradual deployment as after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub key: String,
    pub scope: Scope,
}

impl CacheKey {
    /// v2 labelled entries with their read's index probe (`db::pipeline`); the release before
    /// labelled them with the answer's own index, which can name a change the rows missed.
    pub fn public_note(id: &str) -> Self {
        Self { key: format!("v3/public/note/{id}"), scope: Scope::Note(id.to_string()) }
    }

    /// The feed page's key under the cursor signing key named `key_id`
    /// (`notes::page::signing_key_id`); none for a page after an unsigned cursor
    /// (`notes::page`), which is never cached: its point is the client's choice, and so would
    /// be the key.
    pub fn public_feed(page: &PageRequest, key_id: &str) -> Option<Self> {
        if page.unsigned {
            return None;
        }
        let cursor = page.after.as_ref().map_or_else(|| "first".to_string(), |cursor| cursor.encode());
        // v2: its pages hand out signed cursors, which the release before refuses. v3: as
        // `public_note`'s v2, labelled with the index probe's index. v5: per signing key — a
        // page read under a key that has since changed (or under the other key of a gradual
        // deployment that changes it) handed out cursors the reader's Worker refused, and
        // every next page was `400 invalid_cursor` until the page expired (review finding).
        Some(Self { key: format!("v5/public/feed/{key_id}/{}/{cursor}", page.limit), scope: Scope::Feed })
    }
}

/// The scopes a change to a public note (or a note that was public) makes stale.
pub fn scopes_changed_by_note(id: &str) -> [Scope; 2] {
    [Scope::Note(id.to_string()), Scope::Feed]
}

/// Indexes below this fit a floor's packed form ([`encode_floor`]): over 10^12 frames.
const PACKED_INDEX_LIMIT: u64 = 1 << 40;
/// Terms below this fit it, with room left for `u64::MAX`.
const PACKED_TERM_LIMIT: u64 = (1 << 24) - 1;

/// A floor as KV stores it: one decimal number, which the release before reads as an index. Of
/// the first term, the index itself, as that release wrote it. Of a later term, `term × 2^40 +
/// index`: that release takes it for an index above any it has seen and keeps nothing in the
/// scope while it lives — slower, never older. A floor that does not fit (an index from 2^40, a
/// term from 2^24 − 1, [`CacheVersion::MAX`]) is `u64::MAX`, which reads back as `MAX`: held by
/// nothing.
pub fn encode_floor(floor: CacheVersion) -> Vec<u8> {
    let packed = if floor.index >= PACKED_INDEX_LIMIT || floor.term >= PACKED_TERM_LIMIT {
        u64::MAX
    } else if floor.term <= CacheVersion::FIRST_TERM {
        floor.index
    } else {
        floor.term * PACKED_INDEX_LIMIT + floor.index
    };
    packed.to_string().into_bytes()
}

/// [`encode_floor`]'s number as a version: below 2^40 an index of no known term (of the first,
/// or what the release before wrote, whatever the term), which [`CacheVersion::holds`] compares
/// by index alone, as that release did.
pub fn decode_floor(bytes: &[u8]) -> Option<CacheVersion> {
    let packed: u64 = std::str::from_utf8(bytes).ok()?.trim().parse().ok()?;
    Some(if packed == u64::MAX {
        CacheVersion::MAX
    } else if packed < PACKED_INDEX_LIMIT {
        CacheVersion { term: 0, index: packed }
    } else {
        CacheVersion { term: packed / PACKED_INDEX_LIMIT, index: packed % PACKED_INDEX_LIMIT }
    })
}

#[derive(Debug)]
struct MemoryEntry {
    expires_at: f64,
    scope: Scope,
    query: CachedQuery,
}

/// A scope's floor in this isolate, and the state of its copy in KV.
#[derive(Debug, Clone, Copy)]
struct Floor {
    version: CacheVersion,
    expires_at: f64,
    /// When this isolate last sent the floor to KV.
    sent_at: f64,
    /// A KV write is scheduled; it will carry whatever the floor is when it is sent.
    scheduled: bool,
}

#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: HashMap<String, MemoryEntry>,
    floors: HashMap<Scope, Floor>,
    kv_filled_at: HashMap<String, f64>,
}

impl MemoryCache {
    /// The entry for `key` if it is alive and not below its scope's floor.
    pub fn get(&self, key: &CacheKey, now_ms: f64) -> Option<&CachedQuery> {
        let entry = self.entries.get(&key.key).filter(|entry| now_ms < entry.expires_at)?;
        entry.query.version.holds(&self.floor(&key.scope, now_ms)).then_some(&entry.query)
    }

    /// The floor this isolate knows for `scope`: every change there it knows of, joined (the
    /// lowest version: none).
    pub fn floor(&self, scope: &Scope, now_ms: f64) -> CacheVersion {
        self.floors
            .get(scope)
            .filter(|floor| now_ms < floor.expires_at)
            .map_or_else(CacheVersion::default, |floor| floor.version)
    }

    /// Records that `scope` changed at `change` (a floor only ever rises while it lives: it
    /// becomes the [join](CacheVersion::join) of the two). When it rises, the scope's entries
    /// are dropped and may be refilled to KV at once.
    pub fn raise_floor(&mut self, scope: &Scope, change: CacheVersion, now_ms: f64) {
        let expires_at = now_ms + f64::from(FLOOR_TTL_SECONDS) * 1000.0;
        let current = self.floor(scope, now_ms);
        let version = current.join(change);
        if version == current {
            return;
        }
        if self.floors.len() >= MEMORY_CAPACITY && !self.floors.contains_key(scope) {
            self.floors.retain(|_, floor| now_ms < floor.expires_at);
        }
        // Still full of live floors: forgetting one only costs fills until KV's copy is read —
        // so never one whose KV write is still to be sent, or no isolate would ever read it
        // (those are at most the scopes changed here within a second).
        if self.floors.len() >= MEMORY_CAPACITY
            && let Some(oldest) = self
                .floors
                .iter()
                .filter(|(_, floor)| !floor.scheduled)
                .min_by(|a, b| a.1.expires_at.total_cmp(&b.1.expires_at))
                .map(|(s, _)| s.clone())
        {
            self.floors.remove(&oldest);
        }
        let floor = self.floors.entry(scope.clone()).or_insert(Floor {
            version,
            expires_at,
            sent_at: f64::NEG_INFINITY,
            scheduled: false,
        });
        (floor.version, floor.expires_at) = (version, expires_at);
        let stale: Vec<String> =
            self.entries.iter().filter(|(_, entry)| entry.scope == *scope).map(|(key, _)| key.clone()).collect();
        for key in stale {
            self.entries.remove(&key);
            self.kv_filled_at.remove(&key);
        }
    }

    /// After a change raised `scope`'s floor here: `Some(delay_ms)` when a KV write of the floor
    /// must be scheduled that far ahead, `None` when one is already scheduled (it will carry the
    /// new floor). One write per second per key is all KV takes, so writes are coalesced and
    /// each carries the highest floor known when it is sent: a refused or reordered write can
    /// never leave a lower floor than this isolate knows.
    pub fn schedule_floor_write(&mut self, scope: &Scope, now_ms: f64) -> Option<f64> {
        let floor = self.floors.get_mut(scope)?;
        if floor.scheduled {
            return None;
        }
        floor.scheduled = true;
        Some((floor.sent_at + KV_WRITE_INTERVAL_MS - now_ms).max(0.0))
    }

    /// The floor a scheduled KV write sends now (`None`: it expired meanwhile).
    pub fn send_floor_write(&mut self, scope: &Scope, now_ms: f64) -> Option<CacheVersion> {
        let floor = self.floors.get_mut(scope).filter(|floor| now_ms < floor.expires_at)?;
        (floor.scheduled, floor.sent_at) = (false, now_ms);
        Some(floor.version)
    }

    /// Keeps `query` for `MEMORY_TTL_MS`, or less when its life ends sooner
    /// ([`CachedQuery::expires_at_ms`]), unless it is below its scope's floor, its life has
    /// ended, or the entry served now for `key` is newer (it holds `query`'s version, and
    /// `query` does not hold its own); `false` if refused. Two reads of one key can be under
    /// way at once from sources that differ in freshness (the primary and a lagging replica):
    /// the older one ending last replaced the newer entry, and readers saw a change undone
    /// (review finding).
    pub fn put(&mut self, key: &CacheKey, query: CachedQuery, now_ms: f64) -> bool {
        let expires_at = (now_ms + MEMORY_TTL_MS).min(query.expires_at_ms());
        if !query.version.holds(&self.floor(&key.scope, now_ms)) || expires_at <= now_ms {
            return false;
        }
        let newer =
            |served: &CachedQuery| served.version.holds(&query.version) && !query.version.holds(&served.version);
        if self.get(key, now_ms).is_some_and(newer) {
            return false;
        }
        if self.entries.len() >= MEMORY_CAPACITY && !self.entries.contains_key(&key.key) {
            self.entries.retain(|_, entry| now_ms < entry.expires_at);
            // Still full of live entries: drop the one closest to expiry.
            if self.entries.len() >= MEMORY_CAPACITY
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by(|a, b| a.1.expires_at.total_cmp(&b.1.expires_at))
                    .map(|(key, _)| key.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let entry = MemoryEntry { expires_at, scope: key.scope.clone(), query };
        self.entries.insert(key.key.clone(), entry);
        true
    }

    /// `true` (and remembered) when this isolate may write `key` to KV now.
    pub fn claim_kv_fill(&mut self, key: &str, now_ms: f64) -> bool {
        if self.kv_filled_at.get(key).is_some_and(|at| now_ms - at < KV_REFILL_INTERVAL_MS) {
            return false;
        }
        if self.kv_filled_at.len() >= MEMORY_CAPACITY {
            self.kv_filled_at.retain(|_, at| now_ms - *at < KV_REFILL_INTERVAL_MS);
        }
        self.kv_filled_at.insert(key.to_string(), now_ms);
        true
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Of the first term.
    fn v(index: u64) -> CacheVersion {
        CacheVersion::new(None, index)
    }

    fn entry(index: u64) -> CachedQuery {
        CachedQuery { version: v(index), filled_at_ms: 0, body: br#"{"notes":[]}"#.to_vec() }
    }

    fn note(id: &str) -> CacheKey {
        CacheKey::public_note(id)
    }

    #[test]
    fn encoding_round_trips() {
        let cached = entry(12);
        assert_eq!(CachedQuery::decode(&cached.encode()), Some(cached));
        assert_eq!(CachedQuery::decode(b"garbage"), None);
        assert_eq!(CachedQuery::decode(b"x\n{}"), None);
        assert_eq!(CachedQuery::decode(b"12\n{}"), None, "the release before's entry");
        assert_eq!(CachedQuery::decode(b"1.12.0.5\n{}"), None);
        let later =
            CachedQuery { version: CacheVersion { term: 3, index: 7 }, filled_at_ms: 1_700_000_000_000, ..entry(0) };
        assert_eq!(CachedQuery::decode(&later.encode()), Some(later));
        assert_eq!(decode_floor(b"-1"), None);
    }

    /// The release before reads a floor as one index: of the first term it is that index, of a
    /// later term a number above any index, so that release keeps nothing it cannot order.
    #[test]
    fn floors_keep_their_term_and_the_release_before_reads_them_safely() {
        for floor in [
            v(0),
            v(42),
            v((1 << 40) - 1),
            CacheVersion { term: 2, index: 40 },
            CacheVersion { term: 9, index: (1 << 40) - 1 },
            CacheVersion { term: PACKED_TERM_LIMIT - 1, index: 7 },
            CacheVersion::MAX,
        ] {
            assert_eq!(decode_floor(&encode_floor(floor)), Some(floor), "{floor:?}");
        }
        // A second review's report: what does not fit came back lower than written (an index
        // from 2^40 as a later term's, a term from 2^24 saturated to a finite version).
        for unfit in [v(1 << 40), v((1 << 40) + 5), CacheVersion { term: 1 << 24, index: 10 }] {
            assert_eq!(decode_floor(&encode_floor(unfit)), Some(CacheVersion::MAX), "{unfit:?}");
        }
        assert_eq!(CacheVersion::new(Some(0), 5), v(5), "term 0 is unknown, as in a token");
        assert_eq!(encode_floor(v(42)), b"42", "as the release before wrote it");
        assert_eq!(decode_floor(b"42"), Some(v(42)), "the release before's floor");
        let later: u64 = String::from_utf8(encode_floor(CacheVersion { term: 2, index: 40 })).unwrap().parse().unwrap();
        assert!(later > 1 << 40, "the release before sees a floor above every index it knows");
        let unknown = decode_floor(&encode_floor(CacheVersion::MAX)).unwrap();
        assert!(!CacheVersion { term: 1 << 20, index: 1 << 39 }.holds(&unknown), "held by nothing");
    }

    /// Review reports: after a failover, an entry read from the old primary at index 24 (holding
    /// a write the failover lost) passed a new change's floor at 24 of the new term; and, ordered
    /// by term first, a replica that had followed the new primary at index 22 passed an
    /// unpublish at 24 of the old term that it had not applied.
    #[test]
    fn rows_hold_a_change_only_at_its_index_and_term_or_later() {
        let old_history = CacheVersion { term: 1, index: 24 };
        let change = CacheVersion { term: 2, index: 24 };
        assert!(!old_history.holds(&change) && !CacheVersion { term: 2, index: 23 }.holds(&change));
        assert!(change.holds(&change) && CacheVersion { term: 3, index: 30 }.holds(&change));
        let behind = CacheVersion { term: 2, index: 22 };
        assert!(!behind.holds(&CacheVersion { term: 1, index: 24 }), "a new term does not make up for the index");
        let floor = CacheVersion { term: 1, index: 30 }.join(change);
        assert_eq!(floor, CacheVersion { term: 2, index: 30 });
        assert!(!change.holds(&floor) && CacheVersion { term: 2, index: 30 }.holds(&floor), "slower, never older");
        let mut memory = MemoryCache::default();
        let key = note("a");
        assert!(memory.put(&key, CachedQuery { version: old_history, ..entry(0) }, 0.0));
        memory.raise_floor(&key.scope, change, 1.0);
        assert!(memory.get(&key, 2.0).is_none());
        assert!(!memory.put(&key, CachedQuery { version: old_history, ..entry(0) }, 2.0));
        let requirement = Requirement { index: 24, term: Some(2) };
        assert!(!CachedQuery { version: old_history, ..entry(0) }.is_fresh_for(Some(&requirement)));
        assert!(CachedQuery { version: change, ..entry(0) }.is_fresh_for(Some(&requirement)));
    }

    /// A third review's report: a term the record's history does not name (a fenced primary
    /// promoted again leaves the term between out) was taken as kept up to where the next term
    /// began, and rows of B's lost writes served where the history holds A's.
    #[test]
    fn rows_of_a_term_the_history_does_not_name_are_of_a_dead_branch() {
        use crate::datapath::TermStart;
        let terms = [TermStart { term: 1, from_index: 0 }, TermStart { term: 3, from_index: 30 }];
        let history = History { term: 3, terms: &terms };
        let of = |term, index| CachedQuery { version: CacheVersion { term, index }, ..entry(0) }.is_of(Some(history));
        assert!(!of(2, 28), "term 2's branch left no trace in this history");
        assert!(of(1, 30) && !of(1, 31), "term 1 kept up to 30");
        assert!(of(3, 5) && of(4, 1), "the current term, and one newer than the isolate knows");
        assert!(CachedQuery { version: CacheVersion { term: 2, index: 28 }, ..entry(0) }.is_of(None));
    }

    /// A fourth review's report: labelled as of the first term, a term-less answer (sqld) under
    /// a primary record of a later term was refused as past where term 1 ended — the cache off
    /// for good. Rows of no known term are judged by the index alone, as a token judges them.
    #[test]
    fn rows_of_no_known_term_are_judged_by_the_index_alone() {
        use crate::datapath::TermStart;
        let unknown = |index| CachedQuery { version: CacheVersion::new(None, index), ..entry(0) };
        let change = CacheVersion { term: 2, index: 25 };
        assert!(unknown(30).version.holds(&change) && !unknown(20).version.holds(&change));
        let terms = [TermStart { term: 1, from_index: 0 }, TermStart { term: 2, from_index: 24 }];
        assert!(unknown(101).is_of(Some(History { term: 2, terms: &terms })));
        assert!(unknown(10).is_fresh_for(Some(&Requirement { index: 10, term: Some(2) })));
        assert!(!unknown(9).is_fresh_for(Some(&Requirement { index: 10, term: Some(2) })));
    }

    /// A review's report: of two reads under way at once, the older one (a lagging replica's)
    /// ended last and replaced the newer entry. Versions no read can order (two terms' rows)
    /// replace each other as before.
    #[test]
    fn an_older_read_never_replaces_a_newer_entry() {
        let mut memory = MemoryCache::default();
        let key = note("a");
        assert!(memory.put(&key, entry(10), 0.0));
        assert!(!memory.put(&key, entry(9), 1.0), "older");
        assert_eq!(memory.get(&key, 2.0).map(|kept| kept.version), Some(v(10)));
        assert!(memory.put(&key, entry(10), 3.0) && memory.put(&key, entry(11), 4.0), "as new, or newer");
        let other_term = CachedQuery { version: CacheVersion { term: 2, index: 3 }, ..entry(0) };
        let mut memory = MemoryCache::default();
        memory.put(&key, CachedQuery { version: CacheVersion { term: 3, index: 2 }, ..entry(0) }, 0.0);
        assert!(memory.put(&key, other_term, 1.0), "neither holds the other");
        assert!(memory.put(&key, entry(1), MEMORY_TTL_MS + 5.0), "an expired entry is no longer served");
    }

    /// A review's report: a KV copy read late in its life was kept in memory for a fresh 5 s.
    #[test]
    fn a_copy_lives_no_longer_than_its_fill_allows_in_any_tier() {
        let mut memory = MemoryCache::default();
        let life = f64::from(KV_TTL_SECONDS) * 1000.0;
        assert!(memory.put(&note("a"), entry(1), life - 100.0));
        assert!(memory.get(&note("a"), life - 1.0).is_some());
        assert!(memory.get(&note("a"), life).is_none(), "not {MEMORY_TTL_MS} ms after it was read");
        assert!(!memory.put(&note("b"), entry(1), life), "a copy past its life is not kept");
    }

    #[test]
    fn readers_behind_their_own_writes_skip_older_entries() {
        let requirement = |index| Requirement { index, term: None };
        assert!(entry(10).is_fresh_for(None));
        assert!(entry(10).is_fresh_for(Some(&requirement(10))));
        assert!(!entry(10).is_fresh_for(Some(&requirement(11))));
    }

    #[test]
    fn memory_entries_expire_and_stay_bounded() {
        let mut memory = MemoryCache::default();
        memory.put(&note("a"), entry(1), 0.0);
        assert!(memory.get(&note("a"), MEMORY_TTL_MS - 1.0).is_some());
        assert!(memory.get(&note("a"), MEMORY_TTL_MS).is_none());
        for n in 0..MEMORY_CAPACITY + 50 {
            memory.put(&note(&format!("k{n}")), entry(1), n as f64);
        }
        assert!(memory.len() <= MEMORY_CAPACITY);
        let last = note(&format!("k{}", MEMORY_CAPACITY + 49));
        assert!(memory.get(&last, MEMORY_CAPACITY as f64 + 49.0).is_some());
    }

    #[test]
    fn a_floor_hides_older_entries_and_refuses_older_fills_for_its_lifetime() {
        let mut memory = MemoryCache::default();
        let feed_page = CacheKey::public_feed(&PageRequest { limit: 5, after: None, unsigned: false }, "k").unwrap();
        memory.put(&note("a"), entry(9), 0.0);
        memory.put(&feed_page, entry(9), 0.0);
        memory.raise_floor(&Scope::Feed, v(10), 0.0);
        assert!(memory.get(&feed_page, 1.0).is_none(), "every feed page is below the feed's floor");
        assert!(memory.get(&note("a"), 1.0).is_some(), "another scope is untouched");
        assert!(!memory.put(&feed_page, entry(9), 2.0), "a fill read before the change is refused");
        assert!(memory.put(&feed_page, entry(10), 2.0), "a fill at the change's index is fine");
        memory.raise_floor(&Scope::Feed, v(7), 3.0);
        assert_eq!(memory.floor(&Scope::Feed, 3.0), v(10), "floors never go down");
        memory.raise_floor(&Scope::Feed, CacheVersion { term: 2, index: 8 }, 3.0);
        assert_eq!(memory.floor(&Scope::Feed, 3.0), CacheVersion { term: 2, index: 10 }, "a join of both");
        let expired = 3.0 + f64::from(FLOOR_TTL_SECONDS) * 1000.0;
        assert_eq!(memory.floor(&Scope::Feed, expired - 1.0), CacheVersion { term: 2, index: 10 }, "renewed");
        assert_eq!(memory.floor(&Scope::Feed, expired), CacheVersion::default());
    }

    #[test]
    fn floor_writes_are_coalesced_to_one_per_second_and_carry_the_highest_floor() {
        let mut memory = MemoryCache::default();
        let feed = Scope::Feed;
        memory.raise_floor(&feed, v(10), 0.0);
        assert_eq!(memory.schedule_floor_write(&feed, 0.0), Some(0.0));
        memory.raise_floor(&feed, v(11), 1.0);
        assert_eq!(memory.schedule_floor_write(&feed, 1.0), None, "the scheduled write will carry 11");
        assert_eq!(memory.send_floor_write(&feed, 2.0), Some(v(11)));
        memory.raise_floor(&feed, v(12), 500.0);
        assert_eq!(memory.schedule_floor_write(&feed, 500.0), Some(502.0), "a second after the last write");
        memory.raise_floor(&feed, v(13), 700.0);
        assert_eq!(memory.schedule_floor_write(&feed, 700.0), None);
        assert_eq!(memory.send_floor_write(&feed, 1_002.0), Some(v(13)));
        assert_eq!(memory.schedule_floor_write(&Scope::Note("x".into()), 0.0), None, "no floor, nothing to write");
    }

    #[test]
    fn kv_fills_are_throttled_per_key_and_reopened_by_a_new_floor() {
        let mut memory = MemoryCache::default();
        let key = note("k").key;
        assert!(memory.claim_kv_fill(&key, 0.0));
        assert!(!memory.claim_kv_fill(&key, 5_000.0));
        assert!(memory.claim_kv_fill("other", 5_000.0));
        assert!(memory.claim_kv_fill(&key, KV_REFILL_INTERVAL_MS));
        memory.put(&note("k"), entry(1), KV_REFILL_INTERVAL_MS);
        memory.raise_floor(&Scope::Note("k".into()), v(2), KV_REFILL_INTERVAL_MS + 1.0);
        assert!(memory.claim_kv_fill(&key, KV_REFILL_INTERVAL_MS + 2.0), "an invalidated key may refill");
    }

    #[test]
    fn a_full_isolate_forgets_a_sent_floor_never_one_still_to_be_written_to_kv() {
        let mut memory = MemoryCache::default();
        let note = |n: usize| Scope::Note(format!("note-{n}"));
        memory.raise_floor(&note(0), v(5), 0.0);
        assert_eq!(memory.schedule_floor_write(&note(0), 0.0), Some(0.0));
        for n in 1..MEMORY_CAPACITY {
            let at = n as f64;
            memory.raise_floor(&note(n), v(5), at);
            memory.schedule_floor_write(&note(n), at);
            memory.send_floor_write(&note(n), at);
        }
        let now = MEMORY_CAPACITY as f64;
        memory.raise_floor(&note(MEMORY_CAPACITY), v(5), now);
        assert_eq!(memory.floor(&note(0), now), v(5), "its KV write is still pending");
        assert_eq!(memory.send_floor_write(&note(0), now), Some(v(5)));
        assert_eq!(memory.floor(&note(1), now), CacheVersion::default(), "the oldest sent floor made room");
        assert_eq!(memory.floor(&note(2), now), v(5));
    }

    #[test]
    fn a_note_change_touches_the_note_and_the_whole_feed() {
        assert_eq!(scopes_changed_by_note("abc"), [Scope::Note("abc".into()), Scope::Feed]);
        assert_eq!(CacheKey::public_note("abc").scope.floor_key(), "v1/floor/note/abc");
        assert_eq!(Scope::Feed.floor_key(), "v1/floor/feed");
        let cursor = crate::notes::Cursor { timestamp: 5, id: "x".into() };
        let later_page = PageRequest { limit: 20, after: Some(cursor), unsigned: false };
        assert_eq!(CacheKey::public_feed(&later_page, "k").unwrap().scope, Scope::Feed);
        let rotated = CacheKey::public_feed(&later_page, "other").unwrap();
        assert_ne!(rotated.key, CacheKey::public_feed(&later_page, "k").unwrap().key, "a page per signing key");
        assert_eq!(rotated.scope, Scope::Feed, "one floor for the pages of every key");
        let unsigned = PageRequest { unsigned: true, ..later_page };
        assert_eq!(CacheKey::public_feed(&unsigned, "k"), None, "a point the client chose is no cache key");
    }
}
