//! Per-version request, error and latency counts for one observation window, and the wire
//! format the gateway's `/__gateway/stats` and `/__gateway/config` speak.

use serde::{Deserialize, Serialize};

use crate::plan::Split;

/// How many latency samples a window keeps per version; later ones overwrite the oldest, so
/// memory stays bounded however long a stage runs.
pub const MAX_LATENCY_SAMPLES: usize = 4096;

/// Counts for one version in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionCounts {
    pub requests: u64,
    /// Answers with a 5xx status, or no answer at all.
    pub errors: u64,
    /// 95th percentile latency in ms, `None` without samples.
    pub p95_ms: Option<f64>,
    pub latency_samples: u64,
}

impl VersionCounts {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }
}

/// A bounded ring of latency samples with their counters.
#[derive(Debug, Clone, Default)]
pub struct VersionWindow {
    requests: u64,
    errors: u64,
    samples: Vec<u32>,
    next: usize,
}

impl VersionWindow {
    pub fn record(&mut self, status: u16, latency_ms: u32) {
        self.requests += 1;
        if status >= 500 {
            self.errors += 1;
        }
        if self.samples.len() < MAX_LATENCY_SAMPLES {
            self.samples.push(latency_ms);
        } else if let Some(slot) = self.samples.get_mut(self.next) {
            *slot = latency_ms;
        }
        self.next = (self.next + 1) % MAX_LATENCY_SAMPLES;
    }

    pub fn counts(&self) -> VersionCounts {
        VersionCounts {
            requests: self.requests,
            errors: self.errors,
            p95_ms: percentile(&self.samples, 0.95),
            latency_samples: self.samples.len() as u64,
        }
    }
}

/// The nearest-rank percentile (`q` in 0..=1) of `samples`.
pub fn percentile(samples: &[u32], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(sorted.len() - 1)).map(|v| f64::from(*v))
}

/// One window: what the gateway saw for each version while one split was in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Increments with every config change; a window is the time between two changes.
    pub generation: u64,
    pub split: Split,
    pub started_ms: f64,
    pub blue: VersionCounts,
    pub green: VersionCounts,
}

/// `GET /__gateway/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayStats {
    /// Version ids as the two workers report them (`x-edgestack-version-id`), once seen.
    pub blue_version_id: Option<String>,
    pub green_version_id: Option<String>,
    pub current: WindowReport,
    /// Earlier windows, oldest first (bounded).
    pub history: Vec<WindowReport>,
}

/// `POST /__gateway/config` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigUpdate {
    pub split: Split,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.95), Some(95.0));
        assert_eq!(percentile(&samples, 1.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[7], 0.95), Some(7.0));
        assert_eq!(percentile(&[], 0.95), None);
    }

    #[test]
    fn window_counts_errors_and_bounds_samples() {
        let mut window = VersionWindow::default();
        for i in 0..(MAX_LATENCY_SAMPLES as u32 + 10) {
            window.record(if i % 10 == 0 { 500 } else { 200 }, 5);
        }
        let counts = window.counts();
        assert_eq!(counts.requests, MAX_LATENCY_SAMPLES as u64 + 10);
        assert_eq!(counts.errors, (MAX_LATENCY_SAMPLES as u64 + 10).div_ceil(10));
        assert_eq!(counts.latency_samples, MAX_LATENCY_SAMPLES as u64);
        assert_eq!(counts.p95_ms, Some(5.0));
        assert!((counts.error_rate() - 0.1).abs() < 0.01);
    }
}
