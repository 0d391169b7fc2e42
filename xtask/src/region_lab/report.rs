//! Turns samples into per-region figures, prints the table and builds the JSON report. A figure
//! the worker did not report stays `None` (printed "–"), never a guessed number.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::client::CacheOutcome;
use super::topology::{Configuration, REGIONS, round_trip_table};
use super::workload::{Operation, Role, Sample, Settings};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at_unix_s: u64,
    pub round_trip_ms: RoundTrips,
    pub settings: Settings,
    pub notes: Vec<String>,
    pub configurations: Vec<ConfigurationResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundTrips {
    pub regions: Vec<String>,
    /// `matrix[i][j]`: round trip from `regions[i]` to `regions[j]`.
    pub matrix: Vec<Vec<u64>>,
    pub primary_region: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigurationResult {
    pub key: String,
    pub label: String,
    pub description: String,
    pub read_cache: bool,
    pub replica_regions: Vec<String>,
    pub stack_start_s: f64,
    pub measured_s: f64,
    pub regions: Vec<RegionResult>,
    pub cross_check: CrossCheck,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionResult {
    pub region: String,
    pub requests: usize,
    /// Answers with an unexpected status, or no answer at all.
    pub errors: usize,
    /// Latency of successful requests, in milliseconds.
    pub latency: Latency,
    pub reads: Latency,
    pub writes: Latency,
    /// Mean `x-edgestack-db-requests` over the answers that carried it.
    pub db_requests_per_request: Option<f64>,
    /// How many answers carried `x-edgestack-db-requests`.
    pub db_requests_reported: usize,
    pub cache: CacheFigures,
    /// The same per role: an author's recent write makes older cache entries unusable for
    /// them (read-your-writes); readers only ever wrote their sign-up.
    pub cache_by_role: BTreeMap<Role, CacheFigures>,
    /// Latency per role.
    pub latency_by_role: BTreeMap<Role, Latency>,
    /// Latency of cacheable answers by where they came from (`memory`, `kv`, `database`): what
    /// each cache tier saves.
    pub latency_by_cache_tier: BTreeMap<&'static str, Latency>,
    /// `total;dur` from `Server-Timing`: time inside the worker (the rest of the client's
    /// latency is workerd's ingress and queueing on the shared CPU).
    pub worker_time: Latency,
    /// `db;desc=<target>` round trips by target, from `Server-Timing`.
    pub db_round_trips_by_target: BTreeMap<String, u64>,
    /// Round-trip time per target as the worker measured it (`db;…;dur`).
    pub db_round_trip_ms_by_target: BTreeMap<String, Latency>,
    pub operations: Vec<OperationResult>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheFigures {
    pub hit_memory: u64,
    pub hit_kv: u64,
    pub miss: u64,
    pub bypass: u64,
    /// Answers that said `cache;desc=none` (not cacheable; left out of the ratio).
    pub not_cacheable: u64,
    /// Answers without a `cache` entry.
    pub unreported: u64,
    /// (hit-memory + hit-kv) / (hits + miss + bypass); `None` when no cacheable answer reported.
    pub hit_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperationResult {
    pub operation: Operation,
    pub label: &'static str,
    pub latency: Latency,
    pub errors: usize,
    pub db_requests_per_request: Option<f64>,
}

/// The database's own count of requests in the measured window, next to what the worker said.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CrossCheck {
    /// Sum of `x-edgestack-db-requests` over all regions; `None` if any answer lacked it.
    pub reported_db_requests: Option<u64>,
    /// `db;desc=` round trips per target, all regions together.
    pub reported_by_target: BTreeMap<String, u64>,
    /// devdb `pipelines` + `cursors` served per endpoint during the window.
    pub devdb_requests_by_endpoint: BTreeMap<String, u64>,
    pub devdb_requests_total: u64,
    /// TCP connections workers opened to the databases during the window (via the proxies).
    pub database_connections_opened: u64,
}

impl CrossCheck {
    pub fn new(
        samples: &[Sample],
        before: &BTreeMap<String, u64>,
        after: &BTreeMap<String, u64>,
        database_connections_opened: u64,
    ) -> Self {
        let devdb: BTreeMap<String, u64> = after
            .iter()
            .map(|(name, count)| (name.clone(), count.saturating_sub(before.get(name).copied().unwrap_or(0))))
            .collect();
        let answered: Vec<&Sample> = samples.iter().filter(|sample| sample.status.is_some()).collect();
        let reported = answered
            .iter()
            .map(|sample| sample.report.db_requests.map(u64::from))
            .try_fold(0u64, |sum, count| count.map(|count| sum + count));
        Self {
            reported_db_requests: reported.filter(|_| !answered.is_empty()),
            reported_by_target: count_targets(samples.iter()),
            devdb_requests_total: devdb.values().sum(),
            devdb_requests_by_endpoint: devdb,
            database_connections_opened,
        }
    }
}

fn count_targets<'a>(samples: impl Iterator<Item = &'a Sample>) -> BTreeMap<String, u64> {
    let mut targets = BTreeMap::new();
    for sample in samples {
        for round_trip in &sample.report.db_round_trips {
            *targets.entry(round_trip.target.clone()).or_insert(0) += 1;
        }
    }
    targets
}

fn round_trip_times<'a>(samples: impl Iterator<Item = &'a Sample>) -> BTreeMap<String, Latency> {
    let mut by_target: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for sample in samples {
        for round_trip in &sample.report.db_round_trips {
            if let Some(ms) = round_trip.ms {
                by_target.entry(round_trip.target.clone()).or_default().push(ms);
            }
        }
    }
    by_target.into_iter().map(|(target, values)| (target, Latency::of_values(values))).collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

impl Latency {
    fn of<'a>(samples: impl Iterator<Item = &'a Sample>) -> Self {
        Self::of_values(samples.filter(|sample| sample.ok).map(|sample| sample.latency_ms).collect())
    }

    fn of_values(mut values: Vec<f64>) -> Self {
        values.retain(|value| value.is_finite());
        values.sort_by(f64::total_cmp);
        let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
        Self {
            count: values.len(),
            p50_ms: percentile(&values, 50.0),
            p95_ms: percentile(&values, 95.0),
            p99_ms: percentile(&values, 99.0),
            mean_ms: mean,
        }
    }
}

fn mean_db_requests<'a>(samples: impl Iterator<Item = &'a Sample>) -> (Option<f64>, usize) {
    let counts: Vec<u32> = samples.filter_map(|sample| sample.report.db_requests).collect();
    let mean = (!counts.is_empty()).then(|| counts.iter().map(|&n| f64::from(n)).sum::<f64>() / counts.len() as f64);
    (mean, counts.len())
}

impl CacheFigures {
    fn of<'a>(samples: impl Iterator<Item = &'a Sample>) -> Self {
        let mut figures = Self::default();
        for sample in samples.filter(|sample| sample.status.is_some()) {
            match sample.report.cache {
                Some(CacheOutcome::HitMemory) => figures.hit_memory += 1,
                Some(CacheOutcome::HitKv) => figures.hit_kv += 1,
                Some(CacheOutcome::Miss) => figures.miss += 1,
                Some(CacheOutcome::Bypass) => figures.bypass += 1,
                Some(CacheOutcome::None) => figures.not_cacheable += 1,
                None => figures.unreported += 1,
            }
        }
        let hits = figures.hit_memory + figures.hit_kv;
        let cacheable = hits + figures.miss + figures.bypass;
        figures.hit_ratio = (cacheable > 0).then(|| hits as f64 / cacheable as f64);
        figures
    }
}

impl RegionResult {
    pub fn of(region: &str, samples: &[Sample]) -> Self {
        let mine = || samples.iter().filter(move |sample| sample.region == region);
        let (db_requests_per_request, db_requests_reported) = mean_db_requests(mine());
        let operations = Operation::ALL
            .iter()
            .map(|&operation| {
                let of_operation = || mine().filter(move |sample| sample.operation == operation);
                OperationResult {
                    operation,
                    label: operation.label(),
                    latency: Latency::of(of_operation()),
                    errors: of_operation().filter(|sample| !sample.ok).count(),
                    db_requests_per_request: mean_db_requests(of_operation()).0,
                }
            })
            .collect();
        let tier =
            |outcome: CacheOutcome| Latency::of(mine().filter(move |sample| sample.report.cache == Some(outcome)));
        let latency_by_cache_tier = BTreeMap::from([
            ("memory", tier(CacheOutcome::HitMemory)),
            ("kv", tier(CacheOutcome::HitKv)),
            ("database", tier(CacheOutcome::Miss)),
        ]);
        Self {
            latency_by_cache_tier,
            region: region.to_string(),
            requests: mine().count(),
            errors: mine().filter(|sample| !sample.ok).count(),
            latency: Latency::of(mine()),
            reads: Latency::of(mine().filter(|sample| !sample.operation.is_write())),
            writes: Latency::of(mine().filter(|sample| sample.operation.is_write())),
            db_requests_per_request,
            db_requests_reported,
            cache: CacheFigures::of(mine()),
            cache_by_role: Role::ALL
                .iter()
                .map(|&role| (role, CacheFigures::of(mine().filter(move |sample| sample.role == role))))
                .collect(),
            latency_by_role: Role::ALL
                .iter()
                .map(|&role| (role, Latency::of(mine().filter(move |sample| sample.role == role))))
                .collect(),
            worker_time: Latency::of_values(
                mine().filter(|sample| sample.ok).filter_map(|sample| sample.report.worker_ms).collect(),
            ),
            db_round_trips_by_target: count_targets(mine()),
            db_round_trip_ms_by_target: round_trip_times(mine()),
            operations,
        }
    }
}

impl ConfigurationResult {
    pub fn new(
        configuration: &Configuration,
        samples: &[Sample],
        stack_start_s: f64,
        measured_s: f64,
        cross_check: CrossCheck,
    ) -> Self {
        Self {
            key: configuration.key.to_string(),
            label: configuration.label.to_string(),
            description: configuration.description.to_string(),
            read_cache: configuration.read_cache,
            replica_regions: configuration.replica_regions.iter().map(|r| r.to_string()).collect(),
            stack_start_s,
            measured_s,
            regions: REGIONS.iter().map(|region| RegionResult::of(region, samples)).collect(),
            cross_check,
        }
    }
}

impl RoundTrips {
    pub fn current() -> Self {
        let table = round_trip_table();
        Self {
            regions: table.iter().map(|(region, _)| region.clone()).collect(),
            matrix: table.into_iter().map(|(_, row)| row).collect(),
            primary_region: super::topology::PRIMARY_REGION.to_string(),
        }
    }

    pub fn render(&self) -> String {
        let mut text = format!("round trips (ms) added between regions; primary in {}:\n", self.primary_region);
        let _ = write!(text, "  {:>6}", "");
        for region in &self.regions {
            let _ = write!(text, "{region:>6}");
        }
        text.push('\n');
        for (region, row) in self.regions.iter().zip(&self.matrix) {
            let _ = write!(text, "  {region:>6}");
            for ms in row {
                let _ = write!(text, "{ms:>6}");
            }
            text.push('\n');
        }
        text
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"))
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{:.0} %", v * 100.0))
}

/// The hit ratio, or `off` when every cacheable answer said the cache is switched off.
fn cache_hit(cache: &CacheFigures) -> String {
    let all_bypass = cache.bypass > 0 && cache.hit_memory + cache.hit_kv + cache.miss == 0;
    if all_bypass { "off".to_string() } else { percent(cache.hit_ratio) }
}

/// `primary 120, replica-eu 300`, or "–" when the worker reported no targets.
fn targets(by_target: &BTreeMap<String, u64>) -> String {
    if by_target.is_empty() {
        return "–".to_string();
    }
    by_target.iter().map(|(target, count)| format!("{target} {count}")).collect::<Vec<_>>().join(", ")
}

/// `primary 120 (7.1), replica-eu 300 (6.0)`: count and the worker's p50 per target.
fn round_trips(counts: &BTreeMap<String, u64>, times: &BTreeMap<String, Latency>) -> String {
    if counts.is_empty() {
        return "–".to_string();
    }
    counts
        .iter()
        .map(|(target, count)| {
            format!("{target} {count} ({})", ms(times.get(target).and_then(|latency| latency.p50_ms)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table for one configuration, as printed to stdout.
pub fn render_configuration(result: &ConfigurationResult) -> String {
    let mut text = String::new();
    let requests: usize = result.regions.iter().map(|region| region.requests).sum();
    let _ = writeln!(
        text,
        "{} — {} (stack start {:.1} s, measured {:.1} s, {} requests)",
        result.label, result.description, result.stack_start_s, result.measured_s, requests
    );
    let _ = writeln!(
        text,
        "  {:<6} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9}  db round trips: count (p50 ms)",
        "region", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "worker p50", "db req/req", "cache hit"
    );
    for region in &result.regions {
        let db_per_request = match region.db_requests_per_request {
            // Partly reported: mark it, since the mean covers only some answers.
            Some(mean) if region.db_requests_reported < region.requests => format!("{mean:.2}*"),
            Some(mean) => format!("{mean:.2}"),
            None => "–".to_string(),
        };
        let _ = writeln!(
            text,
            "  {:<6} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9}  {}",
            region.region,
            region.requests,
            region.errors,
            ms(region.latency.p50_ms),
            ms(region.latency.p95_ms),
            ms(region.latency.p99_ms),
            ms(region.worker_time.p50_ms),
            db_per_request,
            cache_hit(&region.cache),
            round_trips(&region.db_round_trips_by_target, &region.db_round_trip_ms_by_target),
        );
    }
    // Readers and authors side by side: what read-your-writes costs those who write.
    let _ =
        writeln!(text, "  {:<7} {:>12} {:>9} {:>12} {:>9}", "by role", "readers p50", "cache", "authors p50", "cache");
    for region in &result.regions {
        let latency = |role| ms(region.latency_by_role.get(&role).and_then(|latency| latency.p50_ms));
        let cache = |role| region.cache_by_role.get(&role).map_or_else(|| "–".to_string(), cache_hit);
        let _ = writeln!(
            text,
            "  {:<7} {:>12} {:>9} {:>12} {:>9}",
            region.region,
            latency(Role::Reader),
            cache(Role::Reader),
            latency(Role::Author),
            cache(Role::Author)
        );
    }
    // Cacheable answers by tier: memory vs KV vs a database round trip.
    if result.regions.iter().any(|region| region.cache.hit_memory + region.cache.hit_kv + region.cache.miss > 0) {
        let _ = writeln!(
            text,
            "  {:<7} {:>18} {:>18} {:>18}",
            "by tier", "memory p50 (n)", "KV p50 (n)", "database p50 (n)"
        );
        for region in &result.regions {
            let tier = |name| {
                region.latency_by_cache_tier.get(name).map_or_else(
                    || "–".to_string(),
                    |latency: &Latency| format!("{} ({})", ms(latency.p50_ms), latency.count),
                )
            };
            let _ = writeln!(
                text,
                "  {:<7} {:>18} {:>18} {:>18}",
                region.region,
                tier("memory"),
                tier("kv"),
                tier("database")
            );
        }
    }
    let check = &result.cross_check;
    let _ = writeln!(
        text,
        "  cross-check: worker reported {} db requests ({}); devdb served {} ({}); {} new db connections",
        check.reported_db_requests.map_or_else(|| "–".to_string(), |n| n.to_string()),
        targets(&check.reported_by_target),
        check.devdb_requests_total,
        targets(&check.devdb_requests_by_endpoint),
        check.database_connections_opened,
    );
    text
}

/// What a reader must know to read the numbers right.
pub fn notes() -> Vec<String> {
    vec![
        "Each region runs its own `wrangler dev` (own KV state); users talk to their region's worker over loopback (client ↔ edge ≈ 0 ms).".into(),
        "Database distance is real network delay: a TCP proxy per (worker region, database) adds the round trip, half each way; connection setup is not delayed.".into(),
        "Replicas apply the primary's writes one way later (devdb --lag-ms = RTT(primary, replica)/2).".into(),
        "Latency is measured on the client, per request, body included; percentiles are nearest-rank over successful requests.".into(),
        "worker p50: Server-Timing total (time inside the worker); db round trips: count per target and the worker's p50 per round trip.".into(),
        "db req/req: mean of x-edgestack-db-requests; cache hit: (hit-memory + hit-kv) / (hits + miss + bypass), `none` answers left out; – means the worker did not report it; * means only some answers did.".into(),
        "Cross-check: devdb pipelines + cursors served during the measured window vs the sum the worker reported.".into(),
        "All processes share one machine (2 cores): absolute numbers include CPU contention; compare configurations, not absolutes.".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::client::{DataPathReport, RoundTrip};
    use super::*;

    fn sample(region: &'static str, operation: Operation, latency_ms: f64, report: DataPathReport) -> Sample {
        Sample { region, role: Role::Reader, operation, latency_ms, status: Some(200), ok: true, report }
    }

    fn reported(db_requests: u32, cache: CacheOutcome, targets: &[&str]) -> DataPathReport {
        DataPathReport {
            db_requests: Some(db_requests),
            cache: Some(cache),
            db_round_trips: targets.iter().map(|t| RoundTrip { target: t.to_string(), ms: Some(5.0) }).collect(),
            worker_ms: Some(1.0),
            server_timing: true,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn unreported_figures_stay_unknown() {
        let samples = vec![sample("eu", Operation::PublicFeed, 10.0, DataPathReport::default())];
        let result = RegionResult::of("eu", &samples);
        assert_eq!(result.db_requests_per_request, None);
        assert_eq!(result.cache.hit_ratio, None);
        assert_eq!(result.cache.unreported, 1);
        let check = CrossCheck::new(&samples, &BTreeMap::new(), &BTreeMap::new(), 0);
        assert_eq!(check.reported_db_requests, None);
    }

    #[test]
    fn cache_ratio_ignores_routes_that_are_not_cacheable() {
        let samples = vec![
            sample("na", Operation::PublicFeed, 1.0, reported(0, CacheOutcome::HitMemory, &[])),
            sample("na", Operation::PublicNote, 2.0, reported(0, CacheOutcome::HitKv, &[])),
            sample("na", Operation::PublicNote, 3.0, reported(1, CacheOutcome::Miss, &["replica-na"])),
            sample("na", Operation::Me, 4.0, reported(2, CacheOutcome::None, &["primary", "primary"])),
            sample("eu", Operation::Me, 4.0, reported(2, CacheOutcome::None, &["primary", "primary"])),
        ];
        let result = RegionResult::of("na", &samples);
        assert_eq!(result.requests, 4);
        assert_eq!(result.cache.hit_ratio, Some(2.0 / 3.0));
        assert_eq!(result.db_requests_per_request, Some(0.75));
        assert_eq!(result.db_round_trips_by_target.get("primary"), Some(&2));
        assert_eq!(result.db_round_trip_ms_by_target["primary"].p50_ms, Some(5.0));
        assert_eq!(result.worker_time.count, 4);
        let before = BTreeMap::from([("primary".to_string(), 10)]);
        let after = BTreeMap::from([("primary".to_string(), 15)]);
        let check = CrossCheck::new(&samples, &before, &after, 0);
        assert_eq!(check.reported_db_requests, Some(5));
        assert_eq!(check.devdb_requests_total, 5);
    }
}
