//! Circuit breakers per endpoint, kept in isolate memory: after a few consecutive failures an
//! endpoint is skipped for a cool-down, then one request is let through to probe it.

use std::collections::HashMap;

pub const FAILURES_TO_OPEN: u32 = 2;
pub const COOL_DOWN_MS: f64 = 10_000.0;

#[derive(Debug, Clone, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until_ms: f64,
}

#[derive(Debug, Clone, Default)]
pub struct CircuitBreakers {
    by_url: HashMap<String, Breaker>,
}

impl CircuitBreakers {
    /// `false` while the endpoint's breaker is open.
    pub fn allows(&self, url: &str, now_ms: f64) -> bool {
        self.by_url.get(url).is_none_or(|breaker| now_ms >= breaker.open_until_ms)
    }

    /// Whether a request may send to the endpoint now, claimed as it sends: while the breaker
    /// is open, no; once its cool-down is over, this request alone is let through as the probe,
    /// and the breaker stays open for the others until the probe's outcome is recorded (a
    /// success closes it, a failure re-opens it for a new cool-down). Without the claim every
    /// request under way at once after the cool-down was a probe, each waiting out the
    /// endpoint's deadline.
    pub fn admit(&mut self, url: &str, now_ms: f64) -> bool {
        let Some(breaker) = self.by_url.get_mut(url) else { return true };
        if now_ms < breaker.open_until_ms {
            return false;
        }
        if breaker.consecutive_failures >= FAILURES_TO_OPEN {
            breaker.open_until_ms = now_ms + COOL_DOWN_MS;
        }
        true
    }

    pub fn record_success(&mut self, url: &str) {
        self.by_url.remove(url);
    }

    pub fn record_failure(&mut self, url: &str, now_ms: f64) {
        let breaker = self.by_url.entry(url.to_string()).or_default();
        breaker.consecutive_failures += 1;
        // Half-open: one failed probe re-opens at once.
        if breaker.consecutive_failures >= FAILURES_TO_OPEN {
            breaker.open_until_ms = now_ms + COOL_DOWN_MS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_and_probes_after_cool_down() {
        let mut breakers = CircuitBreakers::default();
        breakers.record_failure("r", 0.0);
        assert!(breakers.allows("r", 1.0), "one failure is not enough");
        breakers.record_failure("r", 1.0);
        assert!(!breakers.allows("r", 2.0));
        assert!(breakers.allows("r", 1.0 + COOL_DOWN_MS), "probe after the cool-down");
        breakers.record_failure("r", 1.0 + COOL_DOWN_MS);
        assert!(!breakers.allows("r", 2.0 + COOL_DOWN_MS), "a failed probe re-opens");
        breakers.record_success("r");
        assert!(breakers.allows("r", 3.0 + COOL_DOWN_MS));
        assert!(breakers.allows("other", 0.0));
    }
}
