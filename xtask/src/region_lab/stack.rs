//! Starts one configuration's stack: a fresh primary (and replicas), a latency proxy for every
//! (worker region, database) pair, and one `wrangler dev` per region; all stopped on drop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use local_stack::devdb::DevDb;
use local_stack::latency_proxy::LatencyProxy;
use local_stack::services::{ACCOUNTS_MIGRATIONS, NOTES_MIGRATIONS, ServiceVars, write_configs};
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};

use super::topology::{Configuration, Deployment, PRIMARY_REGION, REGIONS, round_trip_ms};

/// A database endpoint as the lab names it: `primary` or `replica-<region>` (the names the
/// worker uses in `Server-Timing`), prefixed `accounts-` / `notes-` in the services shape.
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
        let mut endpoints = Vec::new();
        for (prefix, migrations) in databases(configuration.deployment) {
            let primary = DevDb::start_primary(token, 0)?;
            primary.migrate_dir(&local_stack::workspace_root().join(migrations))?;
            let primary_index = endpoints.len();
            endpoints.push(Endpoint { name: format!("{prefix}primary"), region: PRIMARY_REGION, db: primary });
            for region in &configuration.replica_regions {
                let region = REGIONS
                    .iter()
                    .copied()
                    .find(|known| known == region)
                    .ok_or_else(|| format!("replica region {region} is not a simulated region"))?;
                // Replication crosses the same distance: the replica applies a write one way later.
                let lag_ms = round_trip_ms(PRIMARY_REGION, region)? / 2;
                let replica = DevDb::start_replica(&endpoints[primary_index].db, lag_ms, 0)?;
                endpoints.push(Endpoint { name: format!("{prefix}replica-{region}"), region, db: replica });
            }
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
            worker_options.push((region, urls));
        }
        let workers = start_workers(configuration, token, consistency_key, worker_options)?;
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

    /// Waits until every replica has applied everything its primary has, so the measured window
    /// starts from the same data everywhere.
    pub fn wait_for_replicas(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = Vec::new();
            for replica in self.endpoints.iter().filter(|endpoint| endpoint.name.contains("replica-")) {
                let prefix = replica.name.split("replica-").next().unwrap_or_default();
                let primary_name = format!("{prefix}primary");
                let primary =
                    self.endpoints.iter().find(|endpoint| endpoint.name == primary_name).ok_or("no primary")?;
                let wanted = primary.db.stats()?["replication_index"].as_u64().unwrap_or(0);
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

/// For one worker region: each endpoint's name → (its region, the URL of the proxy to it).
type EndpointUrls = BTreeMap<String, (&'static str, String)>;

/// The databases of a deployment: endpoint name prefix and migrations folder.
fn databases(deployment: Deployment) -> Vec<(&'static str, &'static str)> {
    match deployment {
        Deployment::OneWorker => vec![("", "migrations")],
        Deployment::Services => vec![("accounts-", ACCOUNTS_MIGRATIONS), ("notes-", NOTES_MIGRATIONS)],
    }
}

/// The data path vars (docs/edge-data-path.md) every Worker in `region` gets.
fn shared_vars(configuration: &Configuration, region: &str, consistency_key: &str) -> Vec<(String, String)> {
    vec![
        ("EDGESTACK_ENV".to_string(), "development".to_string()),
        ("EDGESTACK_DEV_REGION".to_string(), region.to_string()),
        ("LIBSQL_PRIMARY_REGION".to_string(), PRIMARY_REGION.to_string()),
        ("CONSISTENCY_KEY".to_string(), consistency_key.to_string()),
        ("READ_CACHE".to_string(), if configuration.read_cache { "on" } else { "off" }.to_string()),
    ]
}

/// One database's vars, every URL pointing at the region's proxy for it.
fn database_vars(prefix: &str, token: &str, urls: &EndpointUrls) -> Result<Vec<(String, String)>, String> {
    let (_, primary_url) = urls.get(&format!("{prefix}primary")).ok_or("no primary URL")?;
    let replicas: Vec<String> = urls
        .iter()
        .filter(|(name, _)| name.starts_with(&format!("{prefix}replica-")))
        .map(|(_, (replica_region, url))| format!("{replica_region}={url}"))
        .collect();
    let mut vars = vec![
        ("LIBSQL_PRIMARY_URL".to_string(), primary_url.clone()),
        ("LIBSQL_AUTH_TOKEN".to_string(), token.to_string()),
    ];
    // Level 1 and 3 leave the variable unset rather than empty: both mean "no replicas".
    if !replicas.is_empty() {
        vars.push(("LIBSQL_REPLICAS".to_string(), replicas.join(",")));
    }
    Ok(vars)
}

/// Starts the regions' `wrangler dev` sessions side by side (each start is mostly waiting for
/// workerd), keeping them in region order.
fn start_workers(
    configuration: &Configuration,
    token: &str,
    consistency_key: &str,
    urls_by_region: Vec<(&'static str, EndpointUrls)>,
) -> Result<Vec<RegionWorker>, String> {
    let mut starts = Vec::new();
    for (region, urls) in urls_by_region {
        let shared = shared_vars(configuration, region, consistency_key);
        let (configs, vars) = match configuration.deployment {
            Deployment::OneWorker => {
                let mut vars = shared;
                vars.extend(database_vars("", token, &urls)?);
                (vec![local_stack::workspace_root().join("wrangler.toml")], vars)
            }
            Deployment::Services => {
                let service_vars = ServiceVars {
                    shared,
                    accounts_database: database_vars("accounts-", token, &urls)?,
                    notes_database: database_vars("notes-", token, &urls)?,
                };
                let dir = local_stack::workspace_root().join("target/region-lab/configs").join(region);
                (write_configs(&dir, &service_vars, |_, config| config)?, Vec::new())
            }
        };
        starts.push((region, WranglerDevOptions { configs, vars, ready_timeout: Duration::from_secs(180) }));
    }
    let handles: Vec<_> = starts
        .into_iter()
        .map(|(region, options)| (region, std::thread::spawn(move || WranglerDev::start(options))))
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
