//! The health gate between stages: does the new version do as well as the old one over the
//! same window?
//!
//! It fails as soon as the new version has enough requests and is clearly worse, so a bad build
//! is rolled back after a few dozen requests rather than at the end of the stage; it passes only
//! once both versions have enough requests (and the caller has waited the stage's minimum time).

use crate::stats::VersionCounts;

#[derive(Debug, Clone, PartialEq)]
pub struct GateThresholds {
    /// New error rate may exceed the old one by at most this (0.01 = one percentage point).
    pub max_error_rate_increase: f64,
    /// Above this error rate the old version is no yardstick (0.05 = 5 %): an outage both
    /// versions share would let any new version through, so the gate waits instead.
    pub max_baseline_error_rate: f64,
    /// New p95 ≤ old p95 × this + `latency_slack_ms`.
    pub max_latency_ratio: f64,
    pub latency_slack_ms: f64,
    /// Requests the new version needs before any verdict.
    pub min_requests: u64,
    /// Requests the old version needs before a pass (its numbers are the yardstick).
    pub min_baseline_requests: u64,
    /// Latency samples each version needs before p95s are compared: a p95 over a few dozen
    /// requests is one cold start or one busy moment away from noise.
    pub min_latency_samples: u64,
}

impl Default for GateThresholds {
    fn default() -> Self {
        Self {
            max_error_rate_increase: 0.01,
            max_baseline_error_rate: 0.05,
            max_latency_ratio: 1.5,
            latency_slack_ms: 50.0,
            min_requests: 100,
            min_baseline_requests: 100,
            min_latency_samples: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    /// Not enough traffic yet.
    Wait(String),
    Fail(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pass => f.write_str("pass"),
            Self::Wait(why) => write!(f, "wait: {why}"),
            Self::Fail(why) => write!(f, "FAIL: {why}"),
        }
    }
}

/// Compares the new version (`canary`) with the old one (`baseline`) over one window.
pub fn evaluate(baseline: &VersionCounts, canary: &VersionCounts, thresholds: &GateThresholds) -> Verdict {
    if canary.requests < thresholds.min_requests {
        return Verdict::Wait(format!("new version has {} of {} requests", canary.requests, thresholds.min_requests));
    }
    // Without old-version traffic (e.g. a region at 100 %) the yardstick is a clean record, and
    // latency is not compared (docs/releases.md).
    let baseline_usable = baseline.requests > 0 && baseline.requests >= thresholds.min_baseline_requests;
    let baseline_rate = if baseline_usable { baseline.error_rate() } else { 0.0 };
    let allowed_rate = baseline_rate + thresholds.max_error_rate_increase;
    if canary.error_rate() > allowed_rate {
        return Verdict::Fail(format!(
            "error rate {:.2} % > {:.2} % (old {:.2} % + {:.2} points; {} of {} requests failed)",
            canary.error_rate() * 100.0,
            allowed_rate * 100.0,
            baseline_rate * 100.0,
            thresholds.max_error_rate_increase * 100.0,
            canary.errors,
            canary.requests
        ));
    }
    let enough_latency = |counts: &VersionCounts| counts.latency_samples >= thresholds.min_latency_samples;
    // A p95 the source could not give (null, NaN, infinite) judges nothing: never a pass on it.
    let readable = |counts: &VersionCounts| counts.p95_ms.filter(|p95| p95.is_finite());
    let old_p95 = readable(baseline).filter(|_| baseline_usable && enough_latency(baseline));
    if let (Some(old_p95), Some(new_p95)) = (old_p95, readable(canary).filter(|_| enough_latency(canary))) {
        let allowed = old_p95 * thresholds.max_latency_ratio + thresholds.latency_slack_ms;
        if new_p95 > allowed {
            return Verdict::Fail(format!(
                "p95 latency {new_p95:.0} ms > {allowed:.0} ms (old {old_p95:.0} ms × {} + {} ms)",
                thresholds.max_latency_ratio, thresholds.latency_slack_ms
            ));
        }
    }
    if !enough_latency(canary) {
        return Verdict::Wait(format!(
            "new version has {} of {} latency samples",
            canary.latency_samples, thresholds.min_latency_samples
        ));
    }
    if readable(canary).is_none() {
        return Verdict::Wait(format!("new version's p95 latency is unreadable over {} requests", canary.requests));
    }
    if baseline_usable && !enough_latency(baseline) {
        // Without the old p95 the new one was never compared: waiting is what the new version's
        // own thin record gets too, and a stage that never gets there rolls back.
        return Verdict::Wait(format!(
            "old version has {} of {} latency samples",
            baseline.latency_samples, thresholds.min_latency_samples
        ));
    }
    if baseline_usable && readable(baseline).is_none() {
        return Verdict::Wait(format!("old version's p95 latency is unreadable over {} requests", baseline.requests));
    }
    if baseline_usable && baseline_rate > thresholds.max_baseline_error_rate {
        return Verdict::Wait(format!(
            "old version fails {:.2} % of its {} requests, over the {:.2} % it can be judged against: an outage both share says nothing of the new one",
            baseline_rate * 100.0,
            baseline.requests,
            thresholds.max_baseline_error_rate * 100.0
        ));
    }
    if !baseline_usable && baseline.requests > 0 {
        return Verdict::Wait(format!(
            "old version has {} of {} requests",
            baseline.requests, thresholds.min_baseline_requests
        ));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(requests: u64, errors: u64, p95_ms: f64) -> VersionCounts {
        VersionCounts { requests, errors, p95_ms: Some(p95_ms), latency_samples: requests }
    }

    fn check(baseline: VersionCounts, canary: VersionCounts, expected: &str) {
        let thresholds = GateThresholds {
            min_requests: 20,
            min_baseline_requests: 20,
            min_latency_samples: 40,
            ..GateThresholds::default()
        };
        let verdict = evaluate(&baseline, &canary, &thresholds);
        let kind = match &verdict {
            Verdict::Pass => "pass",
            Verdict::Wait(_) => "wait",
            Verdict::Fail(_) => "fail",
        };
        assert_eq!(kind, expected, "{verdict:?}");
    }

    #[test]
    fn healthy_canary_passes() {
        check(counts(1000, 0, 10.0), counts(50, 0, 12.0), "pass");
        // Within one point of the old error rate.
        check(counts(1000, 20, 10.0), counts(100, 2, 12.0), "pass");
        // Within 1.5 × + 50 ms.
        check(counts(1000, 0, 100.0), counts(100, 0, 199.0), "pass");
    }

    #[test]
    fn errors_fail_the_gate() {
        check(counts(1000, 0, 10.0), counts(20, 20, 10.0), "fail");
        check(counts(1000, 10, 10.0), counts(100, 3, 10.0), "fail");
    }

    #[test]
    fn slow_canary_fails_the_gate() {
        check(counts(1000, 0, 10.0), counts(50, 0, 400.0), "fail");
        check(counts(1000, 0, 100.0), counts(100, 0, 201.0), "fail");
    }

    /// An outage both versions share (the database down, a dependency failing) is no evidence
    /// that the new version is healthy: its error rate within a point of the old one's would
    /// have passed, and the release widened the canary in the middle of an incident. The gate
    /// waits for the old version to be healthy again (and rolls back at `--max-stage` if it
    /// never is); a new version worse than a failing old one still fails at once.
    #[test]
    fn an_outage_both_versions_share_is_no_verdict() {
        check(counts(1000, 500, 10.0), counts(100, 50, 10.0), "wait");
        check(counts(1000, 60, 10.0), counts(100, 6, 10.0), "wait");
        check(counts(1000, 500, 10.0), counts(100, 100, 10.0), "fail");
        check(counts(1000, 40, 10.0), counts(100, 4, 10.0), "pass");
    }

    #[test]
    fn too_little_traffic_waits() {
        check(counts(1000, 0, 10.0), counts(19, 19, 10.0), "wait");
        check(counts(5, 0, 10.0), counts(50, 0, 10.0), "wait");
        // Enough requests to judge errors, too few to judge a p95: no latency verdict yet.
        check(counts(1000, 0, 10.0), counts(30, 0, 400.0), "wait");
        check(counts(1000, 0, 10.0), counts(30, 30, 10.0), "fail");
    }

    /// Analytics Engine can answer a row with requests but no usable p95 (`null`, `"nan"`,
    /// `"inf"`): the latency was never judged, so the gate waits (and, with no verdict by the
    /// stage's maximum, rolls back) instead of passing. The same for the old version's p95.
    #[test]
    fn a_p95_that_cannot_be_read_is_never_passed_on() {
        use crate::analytics::parse_window;
        const OLD: &str = "11111111-2222-3333-4444-555555555555";
        const NEW: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
        for unreadable in ["null", "\"nan\"", "\"inf\""] {
            for (old_p95, new_p95) in [("40", unreadable), (unreadable, "40")] {
                let body = format!(
                    r#"{{"data":[{{"version_id":"{OLD}","requests":5000,"errors":0,"p95_ms":{old_p95}}},{{"version_id":"{NEW}","requests":500,"errors":0,"p95_ms":{new_p95}}}]}}"#
                );
                let (old, new) = parse_window(&body, OLD, NEW).unwrap();
                let verdict = evaluate(&old, &new, &GateThresholds::default());
                assert!(
                    matches!(verdict, Verdict::Wait(ref why) if why.contains("unreadable")),
                    "old {old_p95}, new {new_p95}: {verdict:?}"
                );
            }
        }
        let infinite = VersionCounts { p95_ms: Some(f64::INFINITY), ..counts(500, 0, 0.0) };
        assert!(matches!(evaluate(&counts(5000, 0, 40.0), &infinite, &GateThresholds::default()), Verdict::Wait(_)));
    }

    /// The old version has enough requests to judge errors but too few latency samples for its
    /// p95: the new version's latency was never compared, so the stage waits instead of passing
    /// a canary ten times slower (as it waits for the new version's own samples).
    #[test]
    fn a_baseline_too_thin_to_judge_latency_is_never_passed_on() {
        check(counts(30, 0, 10.0), counts(1000, 0, 400.0), "wait");
        check(counts(30, 0, 10.0), counts(1000, 0, 10.0), "wait");
        // Errors are still judged against it.
        check(counts(30, 0, 10.0), counts(1000, 100, 10.0), "fail");
        check(counts(40, 0, 10.0), counts(1000, 0, 12.0), "pass");
    }

    #[test]
    fn without_old_traffic_the_canary_must_be_clean() {
        check(VersionCounts::default(), counts(100, 0, 10.0), "pass");
        check(VersionCounts::default(), counts(100, 5, 10.0), "fail");
        // Also when no minimum is asked of the old version (`--min-requests 0`): no requests is
        // no yardstick, not one whose latency samples are still to come.
        let no_minimum = GateThresholds { min_requests: 0, min_baseline_requests: 0, ..GateThresholds::default() };
        assert_eq!(evaluate(&VersionCounts::default(), &counts(300, 0, 10.0), &no_minimum), Verdict::Pass);
    }
}
