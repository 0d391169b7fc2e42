//! The read cache for public queries: a small in-isolate memory tier in front of Workers KV,
//! and the invalidation floors that keep both tiers from serving what a change replaced.
//!
//! Staleness contract (docs/edge-data-path.md):
//! - an entry lives at most `KV_TTL_SECONDS` in KV and `MEMORY_TTL_MS` in an isolate, and
//!   records a replication index its rows are at least as new as (the read's index probe,
//!   `db::pipeline`);
//! - a change leaves a **floor** — the change's replication index — on every scope it touches
//!   (the note, and the whole public feed), in this isolate at once and in KV for
//!   `FLOOR_TTL_SECONDS`. An entry below its scope's floor is never served, and a read below
//!   the floor is never stored, so a fill from a lagging replica cannot undo an invalidation.
//!   Floors live in their own KV keys, which fills never write: KV is last-write-wins without
//!   compare-and-set, so a floor stored inside the entry could be overwritten by an old fill;
//! - a client whose last write is newer than an entry skips it: the author of a change never
//!   sees the stale value.

use std::collections::HashMap;

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

/// A cached query result: the JSON body the API answered, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedQuery {
    pub replication_index: u64,
    pub body: Vec<u8>,
}

impl CachedQuery {
    /// `<index>\n<body>`: small, and the body stays readable in the KV dashboard.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = format!("{}\n", self.replication_index).into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let newline = bytes.iter().position(|b| *b == b'\n')?;
        let replication_index = std::str::from_utf8(&bytes[..newline]).ok()?.parse().ok()?;
        Some(Self { replication_index, body: bytes[newline + 1..].to_vec() })
    }

    /// Usable by a client that has seen writes up to `required_index`.
    pub fn is_fresh_for(&self, required_index: Option<u64>) -> bool {
        required_index.is_none_or(|required| self.replication_index >= required)
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub key: String,
    pub scope: Scope,
}

impl CacheKey {
    /// v2: entries labelled with their read's index probe (`db::pipeline`); the release before
    /// labelled them with the answer's own index, which can name a change the rows missed, and
    /// its entries would pass that change's floor. Under their own keys, neither release reads
    /// the other's during a gradual deployment.
    pub fn public_note(id: &str) -> Self {
        Self { key: format!("v2/public/note/{id}"), scope: Scope::Note(id.to_string()) }
    }

    /// The feed page's key; none for a page after an unsigned cursor (`notes::page`), which
    /// is never cached: its point is the client's choice, and so would be the key.
    pub fn public_feed(page: &PageRequest) -> Option<Self> {
        if page.unsigned {
            return None;
        }
        let cursor = page.after.as_ref().map_or_else(|| "first".to_string(), |cursor| cursor.encode());
        // v2: its pages hand out signed cursors, which the release before refuses; under their
        // own keys, that release never serves them from KV during a gradual deployment. v3: as
        // `public_note`'s v2, labelled with the index probe's index.
        Some(Self { key: format!("v3/public/feed/{}/{cursor}", page.limit), scope: Scope::Feed })
    }
}

/// The scopes a change to a public note (or a note that was public) makes stale.
pub fn scopes_changed_by_note(id: &str) -> [Scope; 2] {
    [Scope::Note(id.to_string()), Scope::Feed]
}

/// A floor as KV stores it: the decimal index.
pub fn encode_floor(index: u64) -> Vec<u8> {
    index.to_string().into_bytes()
}

pub fn decode_floor(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
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
    index: u64,
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
        (entry.query.replication_index >= self.floor(&key.scope, now_ms)).then_some(&entry.query)
    }

    /// The highest floor this isolate knows for `scope` (0: none).
    pub fn floor(&self, scope: &Scope, now_ms: f64) -> u64 {
        self.floors.get(scope).filter(|floor| now_ms < floor.expires_at).map_or(0, |floor| floor.index)
    }

    /// Records that `scope` changed at `index` (a floor only ever rises while it lives). When
    /// it rises, the scope's entries are dropped and may be refilled to KV at once.
    pub fn raise_floor(&mut self, scope: &Scope, index: u64, now_ms: f64) {
        let expires_at = now_ms + f64::from(FLOOR_TTL_SECONDS) * 1000.0;
        if index <= self.floor(scope, now_ms) {
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
            index,
            expires_at,
            sent_at: f64::NEG_INFINITY,
            scheduled: false,
        });
        (floor.index, floor.expires_at) = (index, expires_at);
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
    pub fn send_floor_write(&mut self, scope: &Scope, now_ms: f64) -> Option<u64> {
        let floor = self.floors.get_mut(scope).filter(|floor| now_ms < floor.expires_at)?;
        (floor.scheduled, floor.sent_at) = (false, now_ms);
        Some(floor.index)
    }

    /// Keeps `query` for `MEMORY_TTL_MS` unless it is below its scope's floor; `false` if refused.
    pub fn put(&mut self, key: &CacheKey, query: CachedQuery, now_ms: f64) -> bool {
        if query.replication_index < self.floor(&key.scope, now_ms) {
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
        let entry = MemoryEntry { expires_at: now_ms + MEMORY_TTL_MS, scope: key.scope.clone(), query };
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

    fn entry(index: u64) -> CachedQuery {
        CachedQuery { replication_index: index, body: br#"{"notes":[]}"#.to_vec() }
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
        assert_eq!(decode_floor(&encode_floor(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode_floor(b"-1"), None);
    }

    #[test]
    fn readers_behind_their_own_writes_skip_older_entries() {
        assert!(entry(10).is_fresh_for(None));
        assert!(entry(10).is_fresh_for(Some(10)));
        assert!(!entry(10).is_fresh_for(Some(11)));
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
        let feed_page = CacheKey::public_feed(&PageRequest { limit: 5, after: None, unsigned: false }).unwrap();
        memory.put(&note("a"), entry(9), 0.0);
        memory.put(&feed_page, entry(9), 0.0);
        memory.raise_floor(&Scope::Feed, 10, 0.0);
        assert!(memory.get(&feed_page, 1.0).is_none(), "every feed page is below the feed's floor");
        assert!(memory.get(&note("a"), 1.0).is_some(), "another scope is untouched");
        assert!(!memory.put(&feed_page, entry(9), 2.0), "a fill read before the change is refused");
        assert!(memory.put(&feed_page, entry(10), 2.0), "a fill at the change's index is fine");
        memory.raise_floor(&Scope::Feed, 7, 3.0);
        assert_eq!(memory.floor(&Scope::Feed, 3.0), 10, "floors never go down");
        let expired = f64::from(FLOOR_TTL_SECONDS) * 1000.0;
        assert_eq!(memory.floor(&Scope::Feed, expired), 0);
    }

    #[test]
    fn floor_writes_are_coalesced_to_one_per_second_and_carry_the_highest_floor() {
        let mut memory = MemoryCache::default();
        let feed = Scope::Feed;
        memory.raise_floor(&feed, 10, 0.0);
        assert_eq!(memory.schedule_floor_write(&feed, 0.0), Some(0.0));
        memory.raise_floor(&feed, 11, 1.0);
        assert_eq!(memory.schedule_floor_write(&feed, 1.0), None, "the scheduled write will carry 11");
        assert_eq!(memory.send_floor_write(&feed, 2.0), Some(11));
        memory.raise_floor(&feed, 12, 500.0);
        assert_eq!(memory.schedule_floor_write(&feed, 500.0), Some(502.0), "a second after the last write");
        memory.raise_floor(&feed, 13, 700.0);
        assert_eq!(memory.schedule_floor_write(&feed, 700.0), None);
        assert_eq!(memory.send_floor_write(&feed, 1_002.0), Some(13));
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
        memory.raise_floor(&Scope::Note("k".into()), 2, KV_REFILL_INTERVAL_MS + 1.0);
        assert!(memory.claim_kv_fill(&key, KV_REFILL_INTERVAL_MS + 2.0), "an invalidated key may refill");
    }

    #[test]
    fn a_full_isolate_forgets_a_sent_floor_never_one_still_to_be_written_to_kv() {
        let mut memory = MemoryCache::default();
        let note = |n: usize| Scope::Note(format!("note-{n}"));
        memory.raise_floor(&note(0), 5, 0.0);
        assert_eq!(memory.schedule_floor_write(&note(0), 0.0), Some(0.0));
        for n in 1..MEMORY_CAPACITY {
            let at = n as f64;
            memory.raise_floor(&note(n), 5, at);
            memory.schedule_floor_write(&note(n), at);
            memory.send_floor_write(&note(n), at);
        }
        let now = MEMORY_CAPACITY as f64;
        memory.raise_floor(&note(MEMORY_CAPACITY), 5, now);
        assert_eq!(memory.floor(&note(0), now), 5, "its KV write is still pending");
        assert_eq!(memory.send_floor_write(&note(0), now), Some(5));
        assert_eq!(memory.floor(&note(1), now), 0, "the oldest sent floor made room");
        assert_eq!(memory.floor(&note(2), now), 5);
    }

    #[test]
    fn a_note_change_touches_the_note_and_the_whole_feed() {
        assert_eq!(scopes_changed_by_note("abc"), [Scope::Note("abc".into()), Scope::Feed]);
        assert_eq!(CacheKey::public_note("abc").scope.floor_key(), "v1/floor/note/abc");
        assert_eq!(Scope::Feed.floor_key(), "v1/floor/feed");
        let cursor = crate::notes::Cursor { timestamp: 5, id: "x".into() };
        let later_page = PageRequest { limit: 20, after: Some(cursor), unsigned: false };
        assert_eq!(CacheKey::public_feed(&later_page).unwrap().scope, Scope::Feed);
        let unsigned = PageRequest { unsigned: true, ..later_page };
        assert_eq!(CacheKey::public_feed(&unsigned), None, "a point the client chose is no cache key");
    }
}
