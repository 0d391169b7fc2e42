//! The health reports: a Worker's `/api/health` (which version answered, where, and whether it
//! is configured), the same report as each service's `GET /internal/health`, which the entry
//! reads back, and the entry's `/api/health`, its own report with every service's.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::region::RequestRegion;

/// Who answered: every response the worker sends names the version that served it
/// (docs/releases.md), beside [`SECURITY_HEADERS`](crate::assets::SECURITY_HEADERS).
pub const VERSION_ID_HEADER: &str = "x-edgestack-version-id";
pub const VERSION_TAG_HEADER: &str = "x-edgestack-version-tag";

/// The running version as the version metadata binding reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub id: String,
    pub tag: String,
    pub timestamp: String,
}

/// Only whether a database is configured: its URL is private to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseStatus {
    Configured,
    NotConfigured,
}

/// One Worker's report. Borrowed where it is written; owned where the entry reads a service's.
/// On the wire between services (`/internal/health`): fields are only ever added, as optional,
/// and a reader ignores fields it does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport<'a> {
    pub status: Cow<'a, str>,
    pub version: Cow<'a, VersionInfo>,
    pub region: Cow<'a, RequestRegion>,
    pub environment: Cow<'a, str>,
    pub database: DatabaseStatus,
}

impl<'a> HealthReport<'a> {
    pub fn new(config: &Config, version: &'a VersionInfo, region: &'a RequestRegion) -> Self {
        Self {
            status: Cow::Borrowed("ok"),
            version: Cow::Borrowed(version),
            region: Cow::Borrowed(region),
            environment: Cow::Borrowed(config.environment.as_str()),
            database: if config.database.is_some() {
                DatabaseStatus::Configured
            } else {
                DatabaseStatus::NotConfigured
            },
        }
    }
}

/// A service as the entry's health report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ServiceHealth {
    /// What the service answered to `GET /internal/health`.
    Reported(HealthReport<'static>),
    /// No answer, or one the entry cannot read: `{"status": "unreachable"}`.
    Unreachable { status: &'static str },
}

impl ServiceHealth {
    pub const UNREACHABLE: Self = Self::Unreachable { status: "unreachable" };

    pub fn has_database(&self) -> bool {
        matches!(self, Self::Reported(report) if report.database == DatabaseStatus::Configured)
    }
}

/// The entry's `/api/health`: its own report, whose `database` says whether every service has
/// one, and each service's.
#[derive(Debug, Serialize)]
pub struct EntryHealthReport<'a> {
    #[serde(flatten)]
    pub entry: HealthReport<'a>,
    pub services: ServicesHealth,
}

#[derive(Debug, Serialize)]
pub struct ServicesHealth {
    pub accounts: ServiceHealth,
    pub notes: ServiceHealth,
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

    /// The previous release's `/internal/health` answer, as the entry of this one reads it.
    #[test]
    fn a_service_report_reads_back_as_written_and_ignores_fields_it_does_not_know() {
        let written = serde_json::json!({
            "status": "ok",
            "version": {"id": "v0", "tag": "t0", "timestamp": "2025-01-01"},
            "region": {"name": "eu", "colo": null, "source": "dev_override"},
            "environment": "development",
            "database": "configured",
            "added_later": {"anything": 1}
        });
        let report: HealthReport<'static> = serde_json::from_value(written.clone()).unwrap();
        assert!(ServiceHealth::Reported(report.clone()).has_database());
        let mut expected = written;
        expected.as_object_mut().unwrap().remove("added_later");
        assert_eq!(serde_json::to_value(&report).unwrap(), expected);
        assert_eq!(
            serde_json::to_value(ServiceHealth::UNREACHABLE).unwrap(),
            serde_json::json!({"status": "unreachable"})
        );
        assert!(!ServiceHealth::UNREACHABLE.has_database());
    }
}
