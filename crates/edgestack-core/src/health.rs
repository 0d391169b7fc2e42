//! The `/api/health` report: which version answered, where, and whether it is configured.

use serde::Serialize;

use crate::config::Config;
use crate::region::RequestRegion;

/// The running version as the version metadata binding reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub id: String,
    pub tag: String,
    pub timestamp: String,
}

#[derive(Debug, Serialize)]
pub struct HealthReport<'a> {
    pub status: &'static str,
    pub version: &'a VersionInfo,
    pub region: &'a RequestRegion,
    pub environment: &'static str,
    /// Only whether a database is configured: its URL is private to the backend.
    pub database: &'static str,
}

impl<'a> HealthReport<'a> {
    pub fn new(config: &Config, version: &'a VersionInfo, region: &'a RequestRegion) -> Self {
        Self {
            status: "ok",
            version,
            region,
            environment: config.environment.as_str(),
            database: if config.database.is_some() { "configured" } else { "not_configured" },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::{Location, RequestRegion};

    #[test]
    fn report_never_contains_database_url_or_token() {
        let config = Config::from_lookup(|name| match name {
            "LIBSQL_PRIMARY_URL" => Some("https://private-db.example".into()),
            "LIBSQL_AUTH_TOKEN" => Some("s3cret-token".into()),
            _ => None,
        })
        .unwrap();
        let version = VersionInfo { id: "v1".into(), tag: "abc123".into(), timestamp: "t".into() };
        let region = RequestRegion::new(None, &Location { continent: Some("EU".into()), colo: None });
        let json = serde_json::to_value(HealthReport::new(&config, &version, &region)).unwrap();
        assert_eq!(json["database"], "configured");
        assert_eq!(json["version"]["tag"], "abc123");
        assert_eq!(json["region"]["name"], "eu");
        let text = json.to_string();
        assert!(!text.contains("private-db") && !text.contains("s3cret"), "{text}");
    }
}
