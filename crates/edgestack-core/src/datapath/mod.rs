//! Which database answers: writes go to the primary; reads go to the nearest replica, then to
//! any replica nearer than the primary, then to the primary — skipping endpoints whose circuit
//! breaker is open. With no replicas configured every read goes to the primary (Level 1).
//! After a failover the primary is the one the primary record names (`primary`), and
//! read-your-writes tokens are judged against its history of terms (`consistency`).

mod breaker;
mod consistency;
pub mod failover;
pub mod primary;

pub use breaker::CircuitBreakers;
pub use consistency::{ConsistencyToken, Requirement};
pub use failover::{Failure, HranaAnswer};
pub use primary::{History, PrimaryRecord, PrimaryState, TermStart};

use std::collections::BTreeMap;

use crate::region::RegionName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub region: RegionName,
    pub role: Role,
}

impl Endpoint {
    /// How `Server-Timing` and logs name this endpoint: `primary` or `replica-<region>`.
    pub fn label(&self) -> String {
        match self.role {
            Role::Primary => "primary".to_string(),
            Role::Replica => format!("replica-{}", self.region.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub primary: Endpoint,
    pub replicas: BTreeMap<RegionName, Endpoint>,
}

/// Round-trip estimates between regions, in milliseconds. They order fallbacks (a replica is
/// worth trying before the primary only if it is nearer) and are the region lab's latency table.
pub fn round_trip_ms(a: &RegionName, b: &RegionName) -> u32 {
    if a == b {
        return 5;
    }
    let mut pair = [a.as_str(), b.as_str()];
    pair.sort_unstable();
    match pair {
        ["eu", "na"] => 80,
        ["ap", "na"] => 180,
        ["ap", "eu"] => 160,
        _ => 200,
    }
}

impl Topology {
    pub fn primary_only(primary_url: &str, primary_region: RegionName) -> Self {
        Self {
            primary: Endpoint { url: primary_url.to_string(), region: primary_region, role: Role::Primary },
            replicas: BTreeMap::new(),
        }
    }

    /// Endpoints to try for a read from `region`, in order. The primary is always last, so a
    /// read is refused only when the primary itself cannot answer.
    pub fn read_plan(&self, region: &RegionName, breakers: &CircuitBreakers, now_ms: f64) -> Vec<&Endpoint> {
        let to_primary = round_trip_ms(region, &self.primary.region);
        let mut replicas: Vec<&Endpoint> = self
            .replicas
            .values()
            .filter(|replica| replica.region == *region || round_trip_ms(region, &replica.region) < to_primary)
            .filter(|replica| breakers.allows(&replica.url, now_ms))
            .collect();
        replicas.sort_by_key(|replica| (round_trip_ms(region, &replica.region), replica.region.as_str().to_string()));
        replicas.push(&self.primary);
        replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> RegionName {
        RegionName::parse(name).unwrap()
    }

    fn topology(replica_regions: &[&str]) -> Topology {
        let mut topology = Topology::primary_only("http://primary", region("na"));
        for name in replica_regions {
            topology.replicas.insert(
                region(name),
                Endpoint { url: format!("http://replica-{name}"), region: region(name), role: Role::Replica },
            );
        }
        topology
    }

    fn plan(topology: &Topology, from: &str, breakers: &CircuitBreakers) -> Vec<String> {
        topology.read_plan(&region(from), breakers, 0.0).iter().map(|e| e.label()).collect()
    }

    #[test]
    fn level_one_reads_from_the_primary() {
        assert_eq!(plan(&topology(&[]), "eu", &CircuitBreakers::default()), ["primary"]);
    }

    #[test]
    fn nearest_replica_first_then_nearer_replicas_then_primary() {
        let topology = topology(&["eu", "ap", "na"]);
        let breakers = CircuitBreakers::default();
        assert_eq!(plan(&topology, "eu", &breakers), ["replica-eu", "primary"]);
        // From ap the eu replica (160 ms) is nearer than the na primary (180 ms).
        assert_eq!(plan(&topology, "ap", &breakers), ["replica-ap", "replica-eu", "primary"]);
        assert_eq!(plan(&topology, "na", &breakers), ["replica-na", "primary"]);
        // A region without its own replica still prefers a nearer one.
        assert_eq!(plan(&self::topology(&["eu"]), "ap", &breakers), ["replica-eu", "primary"]);
    }

    #[test]
    fn open_breakers_are_skipped() {
        let topology = topology(&["eu", "ap"]);
        let mut breakers = CircuitBreakers::default();
        for _ in 0..breaker::FAILURES_TO_OPEN {
            breakers.record_failure("http://replica-ap", 0.0);
        }
        assert_eq!(plan(&topology, "ap", &breakers), ["replica-eu", "primary"]);
    }

    #[test]
    fn round_trips_are_symmetric() {
        for (a, b) in [("na", "eu"), ("ap", "na"), ("eu", "ap")] {
            assert_eq!(round_trip_ms(&region(a), &region(b)), round_trip_ms(&region(b), &region(a)));
        }
        assert_eq!(round_trip_ms(&region("eu"), &region("eu")), 5);
    }
}
