//! The read cache for public queries: a small in-isolate memory tier in front of Workers KV.
//!
//! Staleness contract (also in ARCHITECTURE.md):
//! - an entry lives at most `KV_TTL_SECONDS` in KV and `MEMORY_TTL_MS` in an isolate;
//! - a change to a public note deletes its key (and the feed's first page) at once, here; other
//!   Cloudflare locations may serve the old value until KV propagates (about 60 s) plus the
//!   memory tier's 5 s;
//! - every entry records the replication index it was read at, and a client whose last write
//!   is newer than that skips it: the author of a change never sees the stale value.

use std::collections::HashMap;

use crate::notes::PageRequest;

pub const MEMORY_TTL_MS: f64 = 5_000.0;
pub const MEMORY_CAPACITY: usize = 256;
/// KV's minimum `expirationTtl`.
pub const KV_TTL_SECONDS: u32 = 60;
/// An isolate refills a KV key at most this often, so no key is written per request.
const KV_REFILL_INTERVAL_MS: f64 = 10_000.0;

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

pub fn public_note_key(id: &str) -> String {
    format!("v1/public/note/{id}")
}

pub fn public_feed_key(page: &PageRequest) -> String {
    let cursor = page.after.as_ref().map_or_else(|| "first".to_string(), |cursor| cursor.encode());
    format!("v1/public/feed/{}/{cursor}", page.limit)
}

/// Keys a change to a public note makes stale everywhere: the note and the feed's first page
/// (later pages age out with their TTL).
pub fn keys_invalidated_by_note_change(id: &str) -> Vec<String> {
    vec![public_note_key(id), public_feed_key(&PageRequest { limit: crate::notes::page::DEFAULT_LIMIT, after: None })]
}

#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: HashMap<String, (f64, CachedQuery)>,
    kv_filled_at: HashMap<String, f64>,
}

impl MemoryCache {
    pub fn get(&self, key: &str, now_ms: f64) -> Option<&CachedQuery> {
        self.entries.get(key).filter(|(expires, _)| now_ms < *expires).map(|(_, entry)| entry)
    }

    pub fn put(&mut self, key: &str, entry: CachedQuery, now_ms: f64) {
        if self.entries.len() >= MEMORY_CAPACITY && !self.entries.contains_key(key) {
            self.entries.retain(|_, (expires, _)| now_ms < *expires);
            // Still full of live entries: drop the one closest to expiry.
            if self.entries.len() >= MEMORY_CAPACITY
                && let Some(oldest) =
                    self.entries.iter().min_by(|a, b| a.1.0.total_cmp(&b.1.0)).map(|(key, _)| key.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key.to_string(), (now_ms + MEMORY_TTL_MS, entry));
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
        self.kv_filled_at.remove(key);
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

    #[test]
    fn encoding_round_trips() {
        let cached = entry(12);
        assert_eq!(CachedQuery::decode(&cached.encode()), Some(cached));
        assert_eq!(CachedQuery::decode(b"garbage"), None);
        assert_eq!(CachedQuery::decode(b"x\n{}"), None);
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
        memory.put("a", entry(1), 0.0);
        assert!(memory.get("a", MEMORY_TTL_MS - 1.0).is_some());
        assert!(memory.get("a", MEMORY_TTL_MS).is_none());
        for n in 0..MEMORY_CAPACITY + 50 {
            memory.put(&format!("k{n}"), entry(1), n as f64);
        }
        assert!(memory.len() <= MEMORY_CAPACITY);
        assert!(memory.get(&format!("k{}", MEMORY_CAPACITY + 49), MEMORY_CAPACITY as f64 + 49.0).is_some());
    }

    #[test]
    fn kv_fills_are_throttled_per_key() {
        let mut memory = MemoryCache::default();
        assert!(memory.claim_kv_fill("k", 0.0));
        assert!(!memory.claim_kv_fill("k", 5_000.0));
        assert!(memory.claim_kv_fill("other", 5_000.0));
        assert!(memory.claim_kv_fill("k", KV_REFILL_INTERVAL_MS));
        memory.remove("k");
        assert!(memory.claim_kv_fill("k", KV_REFILL_INTERVAL_MS + 1.0), "an invalidated key may refill");
    }

    #[test]
    fn a_note_change_invalidates_the_note_and_the_first_feed_page() {
        let keys = keys_invalidated_by_note_change("abc");
        assert_eq!(keys, vec!["v1/public/note/abc".to_string(), "v1/public/feed/20/first".to_string()]);
    }
}
