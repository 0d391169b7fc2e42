//! The staged rollout: apply each stage's split, gate it on health, promote or roll back.
//!
//! Where traffic is split (wrangler gradual deployments, or the local gateway) and where health
//! comes from (Analytics Engine, or the gateway's counters) are traits, so the same loop runs in
//! production, against real workers locally, and against fakes in unit tests.

use std::time::{Duration, Instant};

use crate::gate::{GateThresholds, Verdict, evaluate};
use crate::plan::{RolloutPlan, Split};
use crate::stats::VersionCounts;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseError(pub String);

impl std::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReleaseError {}

/// The two versions of a rollout, as the traffic controller names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub old: String,
    pub new: String,
}

/// Splits traffic between the old and the new version.
pub trait Traffic {
    /// Makes the new version available at 0 % (uploads it) and names both versions.
    fn prepare(&mut self) -> Result<Versions, ReleaseError>;
    fn apply(&mut self, versions: &Versions, split: &Split) -> Result<(), ReleaseError>;
    /// Everything back on the old version.
    fn rollback(&mut self, versions: &Versions) -> Result<(), ReleaseError>;
}

/// Per-version counts for the current stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub old: VersionCounts,
    pub new: VersionCounts,
    /// The split the source saw in force, when it knows (the gateway does): a mismatch means
    /// the split was lost (e.g. the gateway restarted) and must be applied again.
    pub split: Option<Split>,
}

pub trait HealthSource {
    /// Counts since the stage started `elapsed` ago.
    fn window(&mut self, versions: &Versions, elapsed: Duration) -> Result<Window, ReleaseError>;
}

/// Time, so tests need not sleep.
pub trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&mut self, duration: Duration);
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// How long each gated stage runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTiming {
    /// A stage passes no earlier than this, however good it looks.
    pub min: Duration,
    /// A stage without enough traffic to decide by then fails.
    pub max: Duration,
    pub poll: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Promoted { versions: Versions },
    RolledBack { versions: Versions, stage: usize, split: String, reason: String, window: Window },
}

/// What the rollout reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Prepared(Versions),
    StageApplied { stage: usize, split: String },
    Reapplied { stage: usize },
    Polled { stage: usize, window: Window, verdict: String },
    StagePassed { stage: usize },
    RolledBack { stage: usize, reason: String },
    Promoted,
}

pub struct Rollout<'a> {
    pub plan: &'a RolloutPlan,
    pub thresholds: &'a GateThresholds,
    pub timing: &'a StageTiming,
}

impl Rollout<'_> {
    /// Runs every stage; the last one (100 %) is the promotion and is not gated.
    pub fn run(
        &self,
        traffic: &mut dyn Traffic,
        health: &mut dyn HealthSource,
        clock: &mut dyn Clock,
        report: &mut dyn FnMut(Event),
    ) -> Result<Outcome, ReleaseError> {
        let versions = traffic.prepare()?;
        report(Event::Prepared(versions.clone()));
        let last = self.plan.stages.len();
        for (index, split) in self.plan.stages.iter().enumerate() {
            let stage = index + 1;
            if let Err(error) = traffic.apply(&versions, split) {
                // The stage before may be live, and this one half applied: unwatched, neither may
                // stay, so a stage that cannot be applied rolls back like one that fails its gate.
                let reason = format!("stage {stage} ({}) could not be applied: {error}", split.describe());
                roll_back(traffic, &versions, stage, split, &reason)?;
                report(Event::RolledBack { stage, reason: reason.clone() });
                return Ok(Outcome::RolledBack {
                    versions,
                    stage,
                    split: split.describe(),
                    reason,
                    window: Window::default(),
                });
            }
            report(Event::StageApplied { stage, split: split.describe() });
            if stage == last {
                break;
            }
            if let Err(failure) = self.gate(stage, split, &versions, traffic, health, clock, report) {
                let (reason, window) = match failure {
                    GateFailure::Unhealthy(reason, window) => (reason, *window),
                    // A gate that cannot see is a failed gate: roll back rather than guess.
                    GateFailure::Error(error) => (format!("health source failed: {error}"), Window::default()),
                };
                roll_back(traffic, &versions, stage, split, &reason)?;
                report(Event::RolledBack { stage, reason: reason.clone() });
                return Ok(Outcome::RolledBack { versions, stage, split: split.describe(), reason, window });
            }
            report(Event::StagePassed { stage });
        }
        report(Event::Promoted);
        Ok(Outcome::Promoted { versions })
    }

    #[allow(clippy::too_many_arguments)]
    fn gate(
        &self,
        stage: usize,
        split: &Split,
        versions: &Versions,
        traffic: &mut dyn Traffic,
        health: &mut dyn HealthSource,
        clock: &mut dyn Clock,
        report: &mut dyn FnMut(Event),
    ) -> Result<(), GateFailure> {
        let stage_started = clock.now();
        let mut started = stage_started;
        loop {
            clock.sleep(self.timing.poll);
            let elapsed = clock.now().saturating_duration_since(started);
            let window = health.window(versions, elapsed).map_err(GateFailure::Error)?;
            if let Some(seen) = window.split.as_ref().filter(|seen| *seen != split) {
                // Each loss starts a new window, so the stage's own deadline bounds them: a
                // gateway that keeps restarting, or another release setting its own split,
                // would otherwise keep this stage going for ever.
                if clock.now().saturating_duration_since(stage_started) >= self.timing.max {
                    return Err(GateFailure::Unhealthy(
                        format!(
                            "the split in force is still {}, not {}, after {:?} of applying it again; not promoting blind",
                            seen.describe(),
                            split.describe(),
                            self.timing.max
                        ),
                        Box::new(window),
                    ));
                }
                traffic.apply(versions, split).map_err(GateFailure::Error)?;
                report(Event::Reapplied { stage });
                started = clock.now();
                continue;
            }
            let verdict = evaluate(&window.old, &window.new, self.thresholds);
            report(Event::Polled { stage, window: window.clone(), verdict: verdict.to_string() });
            match verdict {
                Verdict::Fail(reason) => return Err(GateFailure::Unhealthy(reason, Box::new(window))),
                Verdict::Pass if elapsed >= self.timing.min => return Ok(()),
                Verdict::Pass | Verdict::Wait(_) if elapsed < self.timing.max => {}
                Verdict::Pass | Verdict::Wait(_) => {
                    let why = match verdict {
                        Verdict::Wait(why) => why,
                        _ => String::new(),
                    };
                    return Err(GateFailure::Unhealthy(
                        format!("no verdict within {:?} ({why}); not promoting blind", self.timing.max),
                        Box::new(window),
                    ));
                }
            }
        }
    }
}

/// `traffic.rollback`; when it fails, the error keeps why the release rolled back (the release
/// then exits 2 without its summary line), next to the traffic controller's own account of what
/// may still be live and how to restore the old version.
fn roll_back(
    traffic: &mut dyn Traffic,
    versions: &Versions,
    stage: usize,
    split: &Split,
    reason: &str,
) -> Result<(), ReleaseError> {
    traffic.rollback(versions).map_err(|error| {
        ReleaseError(format!(
            "stage {stage} ({}) failed ({reason}), and rolling back failed: {error}",
            split.describe()
        ))
    })
}

enum GateFailure {
    Unhealthy(String, Box<Window>),
    Error(ReleaseError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeTraffic {
        applied: Vec<String>,
        rolled_back: bool,
    }

    impl Traffic for FakeTraffic {
        fn prepare(&mut self) -> Result<Versions, ReleaseError> {
            Ok(Versions { old: "old".into(), new: "new".into() })
        }
        fn apply(&mut self, _: &Versions, split: &Split) -> Result<(), ReleaseError> {
            self.applied.push(split.describe());
            Ok(())
        }
        fn rollback(&mut self, _: &Versions) -> Result<(), ReleaseError> {
            self.rolled_back = true;
            Ok(())
        }
    }

    /// Hands out new-version counts that grow by `per_poll` each poll, with `error_every`.
    struct ScriptedHealth {
        polls: u64,
        per_poll: u64,
        new_errors_per_poll: u64,
        new_p95: f64,
    }

    impl HealthSource for ScriptedHealth {
        fn window(&mut self, _: &Versions, _: Duration) -> Result<Window, ReleaseError> {
            self.polls += 1;
            let counts = |errors: u64, p95: f64| VersionCounts {
                requests: self.polls * self.per_poll,
                errors: self.polls * errors,
                p95_ms: Some(p95),
                latency_samples: self.polls * self.per_poll,
            };
            Ok(Window { old: counts(0, 10.0), new: counts(self.new_errors_per_poll, self.new_p95), split: None })
        }
    }

    struct FakeClock(Instant);

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.0
        }
        fn sleep(&mut self, duration: Duration) {
            self.0 += duration;
        }
    }

    fn run(health: &mut ScriptedHealth) -> (Outcome, FakeTraffic) {
        let mut traffic = FakeTraffic::default();
        let outcome = run_with(&mut traffic, health);
        (outcome, traffic)
    }

    /// The default plan (`1,10,50,100`) with stages of 3–30 s and 20 requests per verdict.
    fn run_with(traffic: &mut dyn Traffic, health: &mut ScriptedHealth) -> Outcome {
        let plan = RolloutPlan::parse("1,10,50,100").unwrap();
        let thresholds = GateThresholds {
            min_requests: 20,
            min_baseline_requests: 20,
            min_latency_samples: 20,
            ..GateThresholds::default()
        };
        let timing =
            StageTiming { min: Duration::from_secs(3), max: Duration::from_secs(30), poll: Duration::from_secs(1) };
        Rollout { plan: &plan, thresholds: &thresholds, timing: &timing }
            .run(traffic, health, &mut FakeClock(Instant::now()), &mut |_| {})
            .unwrap()
    }

    /// Stage 1 (1 %) passes its gate, then applying stage 2 fails (wrangler exits non-zero, a
    /// network error): the release rolls back instead of leaving the new version serving 1 %
    /// with no gate watching it.
    #[test]
    fn a_stage_that_cannot_be_applied_rolls_back() {
        #[derive(Default)]
        struct FailsAtStage2 {
            applied: Vec<String>,
            rolled_back: bool,
        }
        impl Traffic for FailsAtStage2 {
            fn prepare(&mut self) -> Result<Versions, ReleaseError> {
                Ok(Versions { old: "old".into(), new: "new".into() })
            }
            fn apply(&mut self, _: &Versions, split: &Split) -> Result<(), ReleaseError> {
                if !self.applied.is_empty() {
                    return Err(ReleaseError("wrangler versions deploy failed".into()));
                }
                self.applied.push(split.describe());
                Ok(())
            }
            fn rollback(&mut self, _: &Versions) -> Result<(), ReleaseError> {
                self.rolled_back = true;
                Ok(())
            }
        }
        let mut traffic = FailsAtStage2::default();
        let mut health = ScriptedHealth { polls: 0, per_poll: 10, new_errors_per_poll: 0, new_p95: 12.0 };
        let outcome = run_with(&mut traffic, &mut health);
        assert_eq!(traffic.applied, ["1%"]);
        assert!(traffic.rolled_back, "stage 1's 1 % was left live: {outcome:?}");
        let Outcome::RolledBack { stage, reason, .. } = outcome else { panic!("{outcome:?}") };
        assert_eq!(stage, 2);
        assert!(reason.contains("could not be applied: wrangler versions deploy failed"), "{reason}");
    }

    /// The gate fails at stage 1 and the rollback itself fails (wrangler exits non-zero): the
    /// error says which stage failed and why it rolled back, not only wrangler's message.
    #[test]
    fn a_rollback_that_fails_says_what_may_still_be_live_and_what_to_restore() {
        struct RollbackFails;
        impl Traffic for RollbackFails {
            fn prepare(&mut self) -> Result<Versions, ReleaseError> {
                Ok(Versions { old: "old-id".into(), new: "new-id".into() })
            }
            fn apply(&mut self, _: &Versions, _: &Split) -> Result<(), ReleaseError> {
                Ok(())
            }
            fn rollback(&mut self, _: &Versions) -> Result<(), ReleaseError> {
                Err(ReleaseError("wrangler versions deploy old-id@100% failed (exit status: 1)".into()))
            }
        }
        let mut health = ScriptedHealth { polls: 0, per_poll: 10, new_errors_per_poll: 10, new_p95: 12.0 };
        let error = Rollout {
            plan: &RolloutPlan::parse("1,10,50,100").unwrap(),
            thresholds: &GateThresholds { min_requests: 20, min_baseline_requests: 20, ..GateThresholds::default() },
            timing: &StageTiming {
                min: Duration::from_secs(3),
                max: Duration::from_secs(30),
                poll: Duration::from_secs(1),
            },
        }
        .run(&mut RollbackFails, &mut health, &mut FakeClock(Instant::now()), &mut |_| {})
        .unwrap_err();
        for part in ["stage 1 (1%) failed (error rate", "and rolling back failed: wrangler versions deploy old-id@100%"]
        {
            assert!(error.0.contains(part), "`{part}` missing: {error}");
        }
    }

    /// The health source keeps seeing another split than the stage's (a gateway that restarts
    /// after every config change, or a second release setting its own): the stage applies it
    /// again until its maximum, then rolls back, instead of polling for ever.
    #[test]
    fn a_split_that_keeps_being_lost_rolls_back_at_the_stages_maximum() {
        struct AlwaysAllOld(u64);
        impl HealthSource for AlwaysAllOld {
            fn window(&mut self, _: &Versions, _: Duration) -> Result<Window, ReleaseError> {
                self.0 += 1;
                assert!(self.0 < 10_000, "the gate polled {} times and never ended", self.0);
                Ok(Window { split: Some(Split::all_old()), ..Window::default() })
            }
        }
        let mut traffic = FakeTraffic::default();
        let plan = RolloutPlan::parse("10,100").unwrap();
        let timing =
            StageTiming { min: Duration::from_secs(3), max: Duration::from_secs(30), poll: Duration::from_secs(1) };
        let outcome = Rollout { plan: &plan, thresholds: &GateThresholds::default(), timing: &timing }
            .run(&mut traffic, &mut AlwaysAllOld(0), &mut FakeClock(Instant::now()), &mut |_| {})
            .unwrap();
        let Outcome::RolledBack { stage, reason, .. } = outcome else { panic!("{outcome:?}") };
        assert_eq!(stage, 1);
        assert!(reason.contains("the split in force is still 0%, not 10%"), "{reason}");
        assert!(traffic.rolled_back);
    }

    #[test]
    fn healthy_release_goes_through_every_stage() {
        let (outcome, traffic) =
            run(&mut ScriptedHealth { polls: 0, per_poll: 10, new_errors_per_poll: 0, new_p95: 12.0 });
        assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome:?}");
        assert_eq!(traffic.applied, ["1%", "10%", "50%", "100%"]);
        assert!(!traffic.rolled_back);
    }

    #[test]
    fn failing_release_is_rolled_back_at_the_first_stage() {
        let (outcome, traffic) =
            run(&mut ScriptedHealth { polls: 0, per_poll: 10, new_errors_per_poll: 10, new_p95: 12.0 });
        let Outcome::RolledBack { stage, .. } = outcome else { panic!("{outcome:?}") };
        assert_eq!(stage, 1);
        assert_eq!(traffic.applied, ["1%"]);
        assert!(traffic.rolled_back);
    }

    #[test]
    fn slow_release_is_rolled_back() {
        let (outcome, traffic) =
            run(&mut ScriptedHealth { polls: 0, per_poll: 10, new_errors_per_poll: 0, new_p95: 500.0 });
        assert!(matches!(outcome, Outcome::RolledBack { stage: 1, .. }), "{outcome:?}");
        assert!(traffic.rolled_back);
    }

    #[test]
    fn release_without_traffic_is_not_promoted_blind() {
        let (outcome, traffic) =
            run(&mut ScriptedHealth { polls: 0, per_poll: 0, new_errors_per_poll: 0, new_p95: 10.0 });
        let Outcome::RolledBack { reason, .. } = outcome else { panic!("{outcome:?}") };
        assert!(reason.contains("no verdict"), "{reason}");
        assert!(traffic.rolled_back);
    }
}
