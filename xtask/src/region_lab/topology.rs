//! The simulated world of the region lab: regions, the round trips between them, and the
//! configurations (talk levels) that are measured.

/// Simulated regions; each gets its own `wrangler dev` (a Cloudflare location with its own KV).
pub const REGIONS: [&str; 3] = ["na", "eu", "ap"];

/// Where the primary database lives.
pub const PRIMARY_REGION: &str = "na";

/// Round-trip times in milliseconds between regions, standing for real inter-region distance
/// (roughly US East ↔ Frankfurt ↔ Singapore). Symmetric; the same region is `SAME_REGION_MS`.
const SAME_REGION_MS: u64 = 5;
const ROUND_TRIPS_MS: [(&str, &str, u64); 3] = [("na", "eu", 80), ("na", "ap", 180), ("eu", "ap", 160)];

/// Round trip between two regions, in milliseconds. An unknown pair (a region added to
/// [`REGIONS`] without a row here) is a programming error reported to the caller.
pub fn round_trip_ms(from: &str, to: &str) -> Result<u64, String> {
    if from == to {
        return Ok(SAME_REGION_MS);
    }
    ROUND_TRIPS_MS
        .iter()
        .find(|(a, b, _)| (*a == from && *b == to) || (*a == to && *b == from))
        .map(|(_, _, ms)| *ms)
        .ok_or_else(|| format!("no round-trip time between {from} and {to}"))
}

/// The round-trip table as rows of `[from, to..]` for printing and the JSON report.
pub fn round_trip_table() -> Vec<(String, Vec<u64>)> {
    REGIONS
        .iter()
        .map(|from| (from.to_string(), REGIONS.iter().map(|to| round_trip_ms(from, to).unwrap_or(0)).collect()))
        .collect()
}

/// One measured setup of the stack. Adding a level is adding an entry to [`configurations`]:
/// what the worker is told (vars), where replicas are, and which wrangler configs make up the
/// deployment (Level 5: the app split into services).
#[derive(Debug, Clone)]
pub struct Configuration {
    /// Short stable key for JSON and file names, e.g. `level-1`.
    pub key: &'static str,
    /// Human label for the table and the chart, e.g. `Level 1`.
    pub label: &'static str,
    pub description: &'static str,
    /// Regions that get a read replica (empty: every read goes to the primary).
    pub replica_regions: Vec<&'static str>,
    /// `READ_CACHE=on`: the worker's memory + KV cache for public reads.
    pub read_cache: bool,
    pub deployment: Deployment,
}

/// What runs per region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// Levels 1–4: the single Worker (`wrangler.toml`) on one database.
    OneWorker,
    /// Level 5: entry, accounts and notes Workers (`services/`), accounts and notes each on its
    /// own database with the same replica regions.
    Services,
}

/// Every configuration the lab knows, in the order they are run and shown.
pub fn configurations() -> Vec<Configuration> {
    vec![
        Configuration {
            key: "level-1",
            label: "Level 1",
            description: "primary only, no cache",
            replica_regions: Vec::new(),
            read_cache: false,
            deployment: Deployment::OneWorker,
        },
        Configuration {
            key: "level-3",
            label: "Level 3",
            description: "primary only + memory/KV read cache",
            replica_regions: Vec::new(),
            read_cache: true,
            deployment: Deployment::OneWorker,
        },
        Configuration {
            key: "level-4",
            label: "Level 4",
            description: "read cache + replicas in eu and ap",
            replica_regions: vec!["eu", "ap"],
            read_cache: true,
            deployment: Deployment::OneWorker,
        },
        Configuration {
            key: "level-5",
            label: "Level 5",
            description: "services: entry + accounts + notes, a database each, replicas in eu and ap",
            replica_regions: vec!["eu", "ap"],
            read_cache: true,
            deployment: Deployment::Services,
        },
    ]
}

/// Keeps the configurations whose key or number is listed in `selection` (`"1,4"`,
/// `"level-3"`); `None` keeps all.
pub fn select(all: Vec<Configuration>, selection: Option<&str>) -> Result<Vec<Configuration>, String> {
    let Some(selection) = selection else { return Ok(all) };
    let wanted: Vec<String> = selection
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| if item.starts_with("level-") { item.to_string() } else { format!("level-{item}") })
        .collect();
    let chosen: Vec<Configuration> =
        all.iter().filter(|configuration| wanted.iter().any(|key| key == configuration.key)).cloned().collect();
    if chosen.is_empty() {
        let known: Vec<&str> = all.iter().map(|configuration| configuration.key).collect();
        return Err(format!("no configuration matches {selection:?}; known: {}", known.join(", ")));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_symmetric_and_complete() {
        for from in REGIONS {
            for to in REGIONS {
                assert_eq!(round_trip_ms(from, to).unwrap(), round_trip_ms(to, from).unwrap());
            }
        }
        assert_eq!(round_trip_ms("eu", "eu").unwrap(), 5);
        assert_eq!(round_trip_ms("ap", "na").unwrap(), 180);
        assert!(round_trip_ms("na", "mars").is_err());
    }

    #[test]
    fn selects_configurations_by_number_or_key() {
        let keys = |selection| {
            select(configurations(), selection).map(|chosen| chosen.iter().map(|c| c.key).collect::<Vec<_>>())
        };
        assert_eq!(keys(None).unwrap(), ["level-1", "level-3", "level-4", "level-5"]);
        assert_eq!(keys(Some("1, level-4")).unwrap(), ["level-1", "level-4"]);
        assert!(keys(Some("9")).is_err());
    }
}
