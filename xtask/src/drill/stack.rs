//! One run's stack: a primary in `na`, a replica in each of `na`, `eu` and `ap` (all with the
//! run's replication lag), and the single Worker in one `wrangler dev` that names all four.
//! Everything stops on drop (local-stack), on Ctrl-C (xtask's handler) and through the
//! guardian if xtask is killed outright.

use std::path::Path;
use std::time::{Duration, Instant};

use local_stack::devdb::DevDb;
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};

use crate::Result;

/// Where the simulated users are (the worker honours `x-edgestack-region` in development).
pub const REGIONS: [&str; 3] = ["na", "eu", "ap"];
/// The primary's region; a replica sits beside it too, so `na`'s reads do not need it.
pub const PRIMARY_REGION: &str = "na";

pub struct Stack {
    // Field order is drop order: the worker stops before its databases.
    pub dev: WranglerDev,
    /// By region, in [`REGIONS`] order.
    pub replicas: Vec<(&'static str, DevDb)>,
    pub primary: DevDb,
    pub started_in: Duration,
}

impl Stack {
    pub fn start(lag_ms: u64) -> Result<Self> {
        let started = Instant::now();
        let token = local_stack::random_hex(16)?;
        let primary = DevDb::start_primary(&token, 0)?;
        primary.migrate()?;
        let mut replicas = Vec::new();
        for region in REGIONS {
            replicas.push((region, DevDb::start_replica(&primary, lag_ms, 0)?));
        }
        let replica_list: Vec<String> = replicas.iter().map(|(region, db)| format!("{region}={}", db.url)).collect();
        let mut vars = primary.worker_vars();
        vars.extend([
            ("EDGESTACK_ENV".to_string(), "development".to_string()),
            ("LIBSQL_PRIMARY_REGION".to_string(), PRIMARY_REGION.to_string()),
            ("LIBSQL_REPLICAS".to_string(), replica_list.join(",")),
            ("CONSISTENCY_KEY".to_string(), local_stack::random_hex(32)?),
        ]);
        let options =
            WranglerDevOptions { vars, ready_timeout: Duration::from_secs(180), ..WranglerDevOptions::default() };
        let dev = WranglerDev::start(options).map_err(|error| error.to_string())?;
        Ok(Self { dev, replicas, primary, started_in: started.elapsed() })
    }

    /// The single Worker's config (its `CACHE` binding holds the primary record).
    pub fn config(&self) -> Result<&Path> {
        self.dev.configs().first().map(|path| path.as_path()).ok_or_else(|| "wrangler dev has no config".to_string())
    }

    /// Waits until every replica has applied what the primary has (before the load starts).
    pub fn wait_for_replicas(&self, timeout: Duration) -> Result {
        let deadline = Instant::now() + timeout;
        let wanted = replication_index(&self.primary)?;
        for (region, replica) in &self.replicas {
            while replication_index(replica)? < wanted {
                if Instant::now() > deadline {
                    return Err(format!("replica {region} did not catch up within {timeout:?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

pub fn replication_index(db: &DevDb) -> Result<u64> {
    let stats = db.stats()?;
    // A decimal string, as Hrana sends indexes.
    let index = &stats["replication_index"];
    index
        .as_u64()
        .or_else(|| index.as_str().and_then(|text| text.parse().ok()))
        .ok_or_else(|| format!("{}: no replication index in {stats}", db.url))
}

/// Every note id on `db`, read over Hrana as any client would.
pub fn note_ids(db: &DevDb) -> Result<std::collections::BTreeSet<String>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let body = serde_json::json!({"requests": [{"type": "execute", "stmt": {"sql": "SELECT id FROM notes"}}, {"type": "close"}]});
    let mut response = agent
        .post(&format!("{}/v3/pipeline", db.url))
        .header("Authorization", &format!("Bearer {}", db.token))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|e| format!("{}: {e}", db.url))?;
    let answer: serde_json::Value =
        serde_json::from_slice(&response.body_mut().read_to_vec().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let rows = answer["results"][0]["response"]["result"]["rows"]
        .as_array()
        .ok_or_else(|| format!("{}: cannot read the notes: {answer}", db.url))?;
    Ok(rows.iter().filter_map(|row| row[0]["value"].as_str().map(String::from)).collect())
}
