//! Starts one configuration's stack: a fresh primary (and replicas), a latency proxy for every
//! (worker region, database) pair, and one `wrangler dev` per region; all stopped on drop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use local_stack::devdb::DevDb;
use local_stack::latency_proxy::LatencyProxy;
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};

use super::topology::{Configuration, PRIMARY_REGION, REGIONS, round_trip_ms};

/// A database endpoint as the lab names it: `primary` or `replica-<region>` (the names the
/// worker uses in `Server-Timing`).
pub struct Endpoint {
    pub name: String,
    pub region: &'static str,
    pub db: DevDb,
}

pub struct RegionWorker {
    pub region: &'static str,
    pub dev: WranglerDev,
}

pub struct Stack {
    // Field order is drop order: workers stop before the proxies they talk through, and those
    // before the databases.
    pub workers: Vec<RegionWorker>,
    pub proxies: Vec<LatencyProxy>,
    /// The primary first, then the replicas.
    pub endpoints: Vec<Endpoint>,
    pub started_in: Duration,
}

impl Stack {
    pub fn start(configuration: &Configuration, token: &str, consistency_key: &str) -> Result<Self, String> {
        let started = Instant::now();
        let primary = DevDb::start_primary(token, 0)?;
        primary.migrate()?;
        let mut endpoints = vec![Endpoint { name: "primary".into(), region: PRIMARY_REGION, db: primary }];
        for region in &configuration.replica_regions {
            let region = REGIONS
                .iter()
                .copied()
                .find(|known| known == region)
                .ok_or_else(|| format!("replica region {region} is not a simulated region"))?;
            // Replication crosses the same distance: the replica applies a write one way later.
            let lag_ms = round_trip_ms(PRIMARY_REGION, region)? / 2;
            let replica = DevDb::start_replica(&endpoints[0].db, lag_ms, 0)?;
            endpoints.push(Endpoint { name: format!("replica-{region}"), region, db: replica });
        }
        let mut proxies = Vec::new();
        let mut worker_options = Vec::new();
        for region in REGIONS {
            let mut urls = BTreeMap::new();
            for endpoint in &endpoints {
                let rtt = Duration::from_millis(round_trip_ms(region, endpoint.region)?);
                let proxy = LatencyProxy::for_url(&endpoint.db.url, rtt)
                    .map_err(|e| format!("latency proxy for {}: {e}", endpoint.name))?;
                urls.insert(endpoint.name.clone(), (endpoint.region, proxy.url()));
                proxies.push(proxy);
            }
            worker_options.push((region, worker_vars(configuration, region, token, consistency_key, &urls)?));
        }
        let workers = start_workers(configuration, worker_options)?;
        Ok(Self { workers, proxies, endpoints, started_in: started.elapsed() })
    }

    /// `pipelines` (Hrana requests) served so far by each endpoint.
    pub fn pipelines(&self) -> Result<BTreeMap<String, u64>, String> {
        self.endpoints
            .iter()
            .map(|endpoint| {
                let stats = endpoint.db.stats()?;
                let served = stats["pipelines"].as_u64().unwrap_or(0) + stats["cursors"].as_u64().unwrap_or(0);
                Ok((endpoint.name.clone(), served))
            })
            .collect()
    }

    /// Waits until every replica has applied everything the primary has, so the measured window
    /// starts from the same data everywhere.
    pub fn wait_for_replicas(&self, timeout: Duration) -> Result<(), String> {
        let Some((primary, replicas)) = self.endpoints.split_first() else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        loop {
            let wanted = primary.db.stats()?["replication_index"].as_u64().unwrap_or(0);
            let mut behind = Vec::new();
            for replica in replicas {
                let applied = replica.db.stats()?["replication_index"].as_u64().unwrap_or(0);
                if applied < wanted {
                    behind.push(format!("{} at {applied}/{wanted}", replica.name));
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("replicas did not catch up within {timeout:?}: {}", behind.join(", ")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// TCP connections the workers opened to databases so far (through the proxies): shows
    /// whether the worker reuses connections or pays a connection set-up per request.
    pub fn database_connections_opened(&self) -> u64 {
        self.proxies.iter().map(LatencyProxy::connections_accepted).sum()
    }

    pub fn worker(&self, region: &str) -> Result<&WranglerDev, String> {
        self.workers
            .iter()
            .find(|worker| worker.region == region)
            .map(|worker| &worker.dev)
            .ok_or_else(|| format!("no worker for region {region}"))
    }
}

/// The vars of docs/edge-data-path.md for the worker in `region`, with every database URL
/// pointing at that region's proxy for it.
fn worker_vars(
    configuration: &Configuration,
    region: &str,
    token: &str,
    consistency_key: &str,
    urls: &BTreeMap<String, (&str, String)>,
) -> Result<Vec<(String, String)>, String> {
    let (_, primary_url) = urls.get("primary").ok_or("no primary URL")?;
    let replicas: Vec<String> = urls
        .iter()
        .filter(|(name, _)| name.starts_with("replica-"))
        .map(|(_, (replica_region, url))| format!("{replica_region}={url}"))
        .collect();
    let mut vars = vec![
        ("EDGESTACK_ENV".to_string(), "development".to_string()),
        ("EDGESTACK_DEV_REGION".to_string(), region.to_string()),
        ("LIBSQL_PRIMARY_URL".to_string(), primary_url.clone()),
        ("LIBSQL_AUTH_TOKEN".to_string(), token.to_string()),
        ("LIBSQL_PRIMARY_REGION".to_string(), PRIMARY_REGION.to_string()),
        ("CONSISTENCY_KEY".to_string(), consistency_key.to_string()),
        ("READ_CACHE".to_string(), if configuration.read_cache { "on" } else { "off" }.to_string()),
    ];
    // Level 1 and 3 leave the variable unset rather than empty: both mean "no replicas".
    if !replicas.is_empty() {
        vars.push(("LIBSQL_REPLICAS".to_string(), replicas.join(",")));
    }
    vars.extend(configuration.extra_vars.iter().cloned());
    Ok(vars)
}

/// Starts the regions' `wrangler dev` sessions side by side (each start is mostly waiting for
/// workerd), keeping them in region order.
fn start_workers(
    configuration: &Configuration,
    options: Vec<(&'static str, Vec<(String, String)>)>,
) -> Result<Vec<RegionWorker>, String> {
    let handles: Vec<_> = options
        .into_iter()
        .map(|(region, vars)| {
            let options = WranglerDevOptions {
                configs: configuration.wrangler_configs.clone(),
                vars,
                ready_timeout: Duration::from_secs(180),
            };
            (region, std::thread::spawn(move || WranglerDev::start(options)))
        })
        .collect();
    let mut workers = Vec::new();
    let mut errors = Vec::new();
    for (region, handle) in handles {
        match handle.join() {
            Ok(Ok(dev)) => workers.push(RegionWorker { region, dev }),
            Ok(Err(error)) => errors.push(format!("{region}: {error}")),
            Err(_) => errors.push(format!("{region}: the start thread panicked")),
        }
    }
    // Started workers are dropped (stopped) with `workers` when another failed.
    if errors.is_empty() { Ok(workers) } else { Err(format!("wrangler dev failed to start: {}", errors.join("; "))) }
}
