//! Workers KV as the platform documents it, for the simulated Workers: one global, eventually
//! consistent store. A write is visible at once in the location that made it and after
//! `propagation_ms` everywhere else (Cloudflare: about 60 s, the edge's cached copies); the last
//! write wins; values expire after their TTL; a key takes at most one write per second.

use std::collections::HashMap;

/// KV refuses a second write to one key within this many milliseconds (platform limit).
pub const WRITE_INTERVAL_MS: f64 = 1_000.0;

struct Version {
    written_at: f64,
    location: String,
    value: Option<Vec<u8>>,
    expires_at: f64,
}

#[derive(Default)]
pub struct Kv {
    versions: HashMap<String, Vec<Version>>,
    pub propagation_ms: f64,
    /// Every read fails (the binding's outage).
    pub failing: bool,
    /// Writes refused by the per-key limit, for tests to report.
    pub refused_writes: u64,
}

impl Kv {
    pub fn get(&self, location: &str, key: &str, now_ms: f64) -> Result<Option<Vec<u8>>, String> {
        if self.failing {
            return Err("KV is failing (simulated)".into());
        }
        let visible = self
            .versions
            .get(key)
            .into_iter()
            .flatten()
            .filter(|version| version.location == location || version.written_at + self.propagation_ms <= now_ms);
        let latest = visible.max_by(|a, b| a.written_at.total_cmp(&b.written_at));
        if std::env::var("SIM_TRACE").is_ok_and(|t| key.contains(&t)) {
            eprintln!(
                "{now_ms:>8.0} get {location} {key} -> {:?}",
                latest.map(|v| String::from_utf8_lossy(v.value.as_deref().unwrap_or_default())
                    .chars()
                    .take(60)
                    .collect::<String>())
            );
        }
        Ok(latest.filter(|version| now_ms < version.expires_at).and_then(|version| version.value.clone()))
    }

    /// `Err` when the key took a write less than a second ago (KV answers 429).
    pub fn put(
        &mut self,
        location: &str,
        key: &str,
        value: Vec<u8>,
        ttl_seconds: u32,
        now_ms: f64,
    ) -> Result<(), String> {
        if std::env::var("SIM_TRACE").is_ok_and(|t| key.contains(&t)) {
            eprintln!(
                "{now_ms:>8.0} put {location} {key} = {}",
                String::from_utf8_lossy(&value).chars().take(60).collect::<String>()
            );
        }
        let versions = self.versions.entry(key.to_string()).or_default();
        if versions.last().is_some_and(|last| now_ms - last.written_at < WRITE_INTERVAL_MS) {
            self.refused_writes += 1;
            return Err(format!("KV refused a second write to {key} within a second"));
        }
        let expires_at = now_ms + f64::from(ttl_seconds) * 1000.0;
        versions.push(Version { written_at: now_ms, location: location.to_string(), value: Some(value), expires_at });
        Ok(())
    }

    /// How many keys were ever written.
    pub fn keys_written(&self) -> usize {
        self.versions.len()
    }

    /// The value of `key` as every location will eventually see it (for assertions).
    pub fn settled(&self, key: &str, now_ms: f64) -> Option<Vec<u8>> {
        let latest = self.versions.get(key)?.iter().max_by(|a, b| a.written_at.total_cmp(&b.written_at))?;
        latest.value.clone().filter(|_| now_ms < latest.expires_at)
    }
}
