//! Rollout plans: `1,10,50,100` or `eu:100,*:10,*:50,*:100`, parsed once into the traffic split
//! each stage gives the new version.
//!
//! Percentages are held as basis points (1 % = 100 bps) so `0.5` is exact. A stage only ever
//! raises a region's share: an entry lower than what an earlier stage gave is refused, because
//! lowering a threshold would move green users back to blue (see `bucket`).

use std::collections::BTreeMap;

use edgestack_core::region::RegionName;
use serde::{Deserialize, Serialize};

/// 100 % in basis points.
pub const FULL_BPS: u16 = 10_000;

/// The plan when none is given: 1 % → 10 % → 50 % → 100 %.
pub const DEFAULT_PLAN: &str = "1,10,50,100";

/// The new version's share of traffic: a default for every region and per-region overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Share of the traffic, in basis points, in regions without their own entry.
    pub default_bps: u16,
    /// Region name → share in basis points.
    #[serde(default)]
    pub regions: BTreeMap<String, u16>,
}

impl Split {
    /// Everything on the previous version.
    pub fn all_old() -> Self {
        Self::default()
    }

    pub fn all_new() -> Self {
        Self { default_bps: FULL_BPS, regions: BTreeMap::new() }
    }

    /// The new version's share in `region`.
    pub fn bps_for(&self, region: &str) -> u16 {
        self.regions.get(region).copied().unwrap_or(self.default_bps).min(FULL_BPS)
    }

    pub fn is_all_new(&self) -> bool {
        self.default_bps >= FULL_BPS && self.regions.values().all(|bps| *bps >= FULL_BPS)
    }

    /// `eu:100%,*:10%` for logs; plain `10%` without regions.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> =
            self.regions.iter().map(|(region, bps)| format!("{region}:{}", format_percent(*bps))).collect();
        if parts.is_empty() {
            return format_percent(self.default_bps);
        }
        parts.push(format!("*:{}", format_percent(self.default_bps)));
        parts.join(",")
    }

    /// Rejects shares above 100 % and region names that are not region names (used on input
    /// from the network, e.g. the gateway's config endpoint).
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.default_bps > FULL_BPS {
            return Err(PlanError::PercentOutOfRange(format_percent(self.default_bps)));
        }
        for (region, bps) in &self.regions {
            if RegionName::parse(region).is_none_or(|parsed| parsed.as_str() != region) {
                return Err(PlanError::BadRegion(region.clone()));
            }
            if *bps > FULL_BPS {
                return Err(PlanError::PercentOutOfRange(format_percent(*bps)));
            }
        }
        Ok(())
    }
}

/// `1500` → `15%`, `50` → `0.5%`.
pub fn format_percent(bps: u16) -> String {
    if bps.is_multiple_of(100) { format!("{}%", bps / 100) } else { format!("{}%", f64::from(bps) / 100.0) }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    Empty,
    BadEntry(String),
    BadPercent(String),
    PercentOutOfRange(String),
    BadRegion(String),
    /// A stage lowers a share an earlier stage gave (region, from, to).
    Lowers(String, String, String),
    /// A stage that changes nothing.
    NoProgress(usize),
    /// The last stage must give the new version all traffic everywhere.
    DoesNotFinish,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("the rollout plan has no stages"),
            Self::BadEntry(entry) => write!(f, "`{entry}` is not a stage entry (`10`, `eu:100`, `*:50`)"),
            Self::BadPercent(text) => write!(f, "`{text}` is not a percentage (up to two decimals)"),
            Self::PercentOutOfRange(text) => write!(f, "{text} is outside 0-100 %"),
            Self::BadRegion(name) => write!(f, "`{name}` is not a region name"),
            Self::Lowers(region, from, to) => {
                write!(f, "a stage lowers {region} from {from} to {to}; users would move back to the old version")
            }
            Self::NoProgress(stage) => write!(f, "stage {stage} changes nothing"),
            Self::DoesNotFinish => f.write_str("the last stage must be 100 % everywhere (`100` or `*:100`)"),
        }
    }
}

impl std::error::Error for PlanError {}

/// An ordered list of stages; each is the complete split that stage applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPlan {
    pub stages: Vec<Split>,
}

impl RolloutPlan {
    /// Parses `1,10,50,100` or `eu:100,*:10,*:50,*:100`.
    ///
    /// Each comma-separated entry is one stage. `N` and `*:N` set the default share; `region:N`
    /// sets one region. Entries are cumulative: a region set earlier keeps its share until an
    /// entry raises it, and a default never lowers a region that already has more.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let mut stages = Vec::new();
        let mut current = Split::all_old();
        for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let (target, percent) = match entry.split_once(':') {
                Some((target, percent)) => (target.trim(), percent.trim()),
                None => ("*", entry),
            };
            let bps = parse_percent(percent)?;
            let mut next = current.clone();
            if target == "*" {
                if bps < current.default_bps {
                    return Err(PlanError::Lowers(
                        "the default".into(),
                        format_percent(current.default_bps),
                        format_percent(bps),
                    ));
                }
                next.default_bps = bps;
            } else {
                let region = RegionName::parse(target).ok_or_else(|| PlanError::BadRegion(target.to_string()))?;
                let before = current.bps_for(region.as_str());
                if bps < before {
                    return Err(PlanError::Lowers(
                        region.as_str().to_string(),
                        format_percent(before),
                        format_percent(bps),
                    ));
                }
                next.regions.insert(region.as_str().to_string(), bps);
            }
            // A region at or below the default gives nobody anything the default does not:
            // dropped, so `eu:0` or `10,eu:10` is a stage that changes nothing.
            let default_bps = next.default_bps;
            next.regions.retain(|_, region_bps| *region_bps > default_bps);
            if next == current {
                return Err(PlanError::NoProgress(stages.len() + 1));
            }
            stages.push(next.clone());
            current = next;
        }
        if stages.is_empty() {
            return Err(PlanError::Empty);
        }
        if !current.is_all_new() {
            return Err(PlanError::DoesNotFinish);
        }
        Ok(Self { stages })
    }
}

/// `10` → 1000 bps, `0.5` → 50 bps, `12.25%` → 1225 bps.
pub fn parse_percent(text: &str) -> Result<u16, PlanError> {
    let trimmed = text.trim();
    // One `%` at most, and a point only before digits: `10%%` and `1.` are typos, not numbers.
    let text = trimmed.strip_suffix('%').unwrap_or(trimmed);
    let bad = || PlanError::BadPercent(trimmed.to_string());
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    if whole.is_empty()
        || fraction.is_empty()
        || fraction.len() > 2
        || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let fraction: u32 = if fraction.is_empty() { 0 } else { format!("{fraction:0<2}").parse().map_err(|_| bad())? };
    let bps = whole.saturating_mul(100).saturating_add(fraction);
    if bps > u32::from(FULL_BPS) {
        return Err(PlanError::PercentOutOfRange(format!("{text}%")));
    }
    u16::try_from(bps).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(text: &str) -> Result<Vec<String>, PlanError> {
        RolloutPlan::parse(text).map(|plan| plan.stages.iter().map(Split::describe).collect())
    }

    #[test]
    fn default_plan_has_four_stages() {
        assert_eq!(described(DEFAULT_PLAN).unwrap(), ["1%", "10%", "50%", "100%"]);
    }

    #[test]
    fn region_stages_accumulate() {
        assert_eq!(
            described("eu:100,*:10,*:50,*:100").unwrap(),
            ["eu:100%,*:0%", "eu:100%,*:10%", "eu:100%,*:50%", "100%"]
        );
        assert_eq!(described("ap:5, eu:5, 25, 100").unwrap(), ["ap:5%,*:0%", "ap:5%,eu:5%,*:0%", "25%", "100%"]);
    }

    #[test]
    fn percentages_allow_two_decimals() {
        for (text, bps) in [("0.5", 50), ("12.25%", 1225), ("100", 10_000), ("0", 0), ("1.5", 150)] {
            assert_eq!(parse_percent(text), Ok(bps), "{text}");
        }
        for bad in ["", "x", "1.234", "-1", ".5", "1e2", "101", "100.01", "1.", "10%%", "%"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_plans_are_refused() {
        assert_eq!(described(""), Err(PlanError::Empty));
        assert_eq!(described("1,10,50"), Err(PlanError::DoesNotFinish));
        assert_eq!(described("eu:100"), Err(PlanError::DoesNotFinish));
        assert!(matches!(described("10,5,100"), Err(PlanError::Lowers(..))));
        assert!(matches!(described("eu:50,eu:10,100"), Err(PlanError::Lowers(..))));
        assert!(matches!(described("*:20,eu:10,100"), Err(PlanError::Lowers(..))));
        assert_eq!(described("10,10,100"), Err(PlanError::NoProgress(2)));
        // A region given no more than the default gives nobody anything: a stage of it would
        // wait for canary traffic that never comes until it rolls back (`eu:0`), or repeat the
        // stage before (`*:10,eu:10`).
        assert_eq!(described("eu:0,100"), Err(PlanError::NoProgress(1)));
        assert_eq!(described("10,eu:10,100"), Err(PlanError::NoProgress(2)));
        assert!(matches!(described("EU West:10,100"), Err(PlanError::BadRegion(_))));
        assert!(matches!(described("a:b:c,100"), Err(PlanError::BadPercent(_))));
    }

    #[test]
    fn split_reports_share_per_region() {
        let plan = RolloutPlan::parse("eu:100,*:10,100").unwrap();
        assert_eq!((plan.stages[1].bps_for("eu"), plan.stages[1].bps_for("na")), (10_000, 1_000));
        assert!(plan.stages[2].is_all_new());
        assert!(!plan.stages[1].is_all_new());
    }

    #[test]
    fn split_validation_refuses_bad_input() {
        assert!(Split { default_bps: 10_001, regions: BTreeMap::new() }.validate().is_err());
        let bad_region = Split { default_bps: 0, regions: BTreeMap::from([("EU".to_string(), 10)]) };
        assert!(bad_region.validate().is_err());
        assert!(Split { default_bps: 0, regions: BTreeMap::from([("eu".to_string(), 10)]) }.validate().is_ok());
    }
}
