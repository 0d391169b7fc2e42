//! The two places a rollout talks to besides wrangler: the local gateway (traffic split and
//! per-version counters over HTTP) and Analytics Engine's SQL API (production health).

use std::time::Duration;

use super::rollout::{HealthSource, ReleaseError, Traffic, Versions, Window};
use crate::analytics;
use crate::plan::Split;
use crate::routing::Version;
use crate::stats::{ConfigUpdate, GatewayStats};

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into()
}

/// The local canary gateway (`gateway/`): blue is the old version, green the new one.
pub struct LocalGateway {
    pub base_url: String,
    pub token: String,
    agent: ureq::Agent,
}

impl LocalGateway {
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent: agent(Duration::from_secs(10)),
        }
    }

    pub fn stats(&self) -> Result<GatewayStats, ReleaseError> {
        let mut response = self
            .agent
            .get(&format!("{}/__gateway/stats", self.base_url))
            .header("authorization", &format!("Bearer {}", self.token))
            .call()
            .map_err(|e| ReleaseError(format!("gateway stats: {e}")))?;
        let status = response.status();
        let body = response.body_mut().read_to_string().map_err(|e| ReleaseError(format!("gateway stats: {e}")))?;
        if !status.is_success() {
            return Err(ReleaseError(format!("gateway stats: HTTP {status}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| ReleaseError(format!("gateway stats: {e}: {body}")))
    }

    pub fn set_split(&self, split: &Split) -> Result<(), ReleaseError> {
        let body = serde_json::to_string(&ConfigUpdate { split: split.clone() })
            .map_err(|e| ReleaseError(format!("gateway config: {e}")))?;
        let mut response = self
            .agent
            .post(&format!("{}/__gateway/config", self.base_url))
            .header("authorization", &format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| ReleaseError(format!("gateway config: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            Err(ReleaseError(format!("gateway config: HTTP {}: {text}", response.status())))
        }
    }
}

impl Traffic for LocalGateway {
    fn prepare(&mut self) -> Result<Versions, ReleaseError> {
        // Both builds are already running behind the gateway; start from all-blue.
        self.set_split(&Split::all_old())?;
        Ok(Versions { old: Version::Blue.as_str().into(), new: Version::Green.as_str().into() })
    }

    fn apply(&mut self, _: &Versions, split: &Split) -> Result<(), ReleaseError> {
        self.set_split(split)
    }

    fn rollback(&mut self, _: &Versions) -> Result<(), ReleaseError> {
        self.set_split(&Split::all_old()).map_err(|error| {
            ReleaseError(format!(
                "{error}\nThe gateway at {} may still send green its share: set it back with POST /__gateway/config {{\"split\": {{\"default_bps\": 0}}}}",
                self.base_url
            ))
        })
    }
}

impl HealthSource for LocalGateway {
    fn window(&mut self, _: &Versions, _: Duration) -> Result<Window, ReleaseError> {
        let stats = self.stats()?;
        Ok(Window { old: stats.current.blue, new: stats.current.green, split: Some(stats.current.split) })
    }
}

/// Production health: the worker's per-version data points in Analytics Engine.
pub struct AnalyticsEngine {
    pub account_id: String,
    pub api_token: String,
    /// `https://api.cloudflare.com/client/v4`. Data points take up to about a minute to become
    /// queryable, so production stages should last several minutes.
    pub api_base: String,
    agent: ureq::Agent,
}

/// The token the health gate queries Analytics Engine with (Account Analytics: Read). wrangler
/// authenticates with `CLOUDFLARE_API_TOKEN` whenever it is set, ahead of `wrangler login`, so
/// a read-only analytics token there would fail every wrangler command: it has a name of its own.
pub const ANALYTICS_TOKEN_VAR: &str = "EDGESTACK_ANALYTICS_TOKEN";

/// `(account id, analytics token)`: the token from [`ANALYTICS_TOKEN_VAR`], else
/// `CLOUDFLARE_API_TOKEN` (then one token carries both wrangler's and the gate's permissions).
pub fn analytics_credentials(lookup: impl Fn(&str) -> Option<String>) -> Result<(String, String), ReleaseError> {
    let var = |name: &str| lookup(name).filter(|value| !value.is_empty());
    let account_id = var("CLOUDFLARE_ACCOUNT_ID").ok_or_else(|| {
        ReleaseError("CLOUDFLARE_ACCOUNT_ID is not set (the health gate reads Analytics Engine)".into())
    })?;
    let token = var(ANALYTICS_TOKEN_VAR).or_else(|| var("CLOUDFLARE_API_TOKEN")).ok_or_else(|| {
        ReleaseError(format!(
            "neither {ANALYTICS_TOKEN_VAR} nor CLOUDFLARE_API_TOKEN is set (the health gate reads Analytics Engine)"
        ))
    })?;
    Ok((account_id, token))
}

impl AnalyticsEngine {
    pub fn from_env() -> Result<Self, ReleaseError> {
        let (account_id, api_token) = analytics_credentials(|name| std::env::var(name).ok())?;
        Ok(Self {
            account_id,
            api_token,
            api_base: "https://api.cloudflare.com/client/v4".into(),
            agent: agent(Duration::from_secs(30)),
        })
    }
}

impl HealthSource for AnalyticsEngine {
    fn window(&mut self, versions: &Versions, elapsed: Duration) -> Result<Window, ReleaseError> {
        let seconds = u32::try_from(elapsed.as_secs().max(1)).unwrap_or(u32::MAX);
        let sql =
            analytics::window_query(&versions.old, &versions.new, seconds).map_err(|e| ReleaseError(e.to_string()))?;
        let mut response = self
            .agent
            .post(&format!("{}/accounts/{}/analytics_engine/sql", self.api_base, self.account_id))
            .header("authorization", &format!("Bearer {}", self.api_token))
            .send(sql)
            .map_err(|e| ReleaseError(format!("Analytics Engine: {e}")))?;
        let status = response.status();
        let body = response.body_mut().read_to_string().map_err(|e| ReleaseError(format!("Analytics Engine: {e}")))?;
        if !status.is_success() {
            return Err(ReleaseError(format!("Analytics Engine: HTTP {status}: {body}")));
        }
        let (old, new) =
            analytics::parse_window(&body, &versions.old, &versions.new).map_err(|e| ReleaseError(e.to_string()))?;
        Ok(Window { old, new, split: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_gate_has_a_token_of_its_own_so_wranglers_stays_a_deploy_token() {
        let both = lookup(&[
            ("CLOUDFLARE_ACCOUNT_ID", "acc"),
            ("CLOUDFLARE_API_TOKEN", "deploy"),
            (ANALYTICS_TOKEN_VAR, "analytics-read"),
        ]);
        assert_eq!(analytics_credentials(both).unwrap(), ("acc".to_string(), "analytics-read".to_string()));
        // One token for both (it must then carry Workers Scripts: Edit and Account Analytics: Read).
        let one =
            lookup(&[("CLOUDFLARE_ACCOUNT_ID", "acc"), ("CLOUDFLARE_API_TOKEN", "both"), (ANALYTICS_TOKEN_VAR, "")]);
        assert_eq!(analytics_credentials(one).unwrap().1, "both");
        // With `wrangler login` and only the analytics token, CLOUDFLARE_API_TOKEN stays unset.
        let oauth = lookup(&[("CLOUDFLARE_ACCOUNT_ID", "acc"), (ANALYTICS_TOKEN_VAR, "analytics-read")]);
        assert_eq!(analytics_credentials(oauth).unwrap().1, "analytics-read");
        let error = analytics_credentials(lookup(&[("CLOUDFLARE_ACCOUNT_ID", "acc")])).unwrap_err();
        assert!(error.0.contains(ANALYTICS_TOKEN_VAR), "{error}");
        assert!(analytics_credentials(lookup(&[(ANALYTICS_TOKEN_VAR, "t")])).is_err());
    }
}
