//! Worker configuration, parsed once per request from a name → value lookup (vars and secrets).

use std::fmt;

use crate::accounts::SessionPolicy;

/// Where the worker runs. Production is the default so that a missing variable never
/// switches on a development-only behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Production,
    Development,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Development => "development",
        }
    }
}

/// How the worker reaches the libSQL primary. The token never leaves the worker.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `https://` or `http://` base URL of the Hrana endpoint (`libsql://` is rewritten to https).
    pub primary_url: String,
    pub auth_token: String,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("primary_url", &self.primary_url)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

/// A fault a test build injects into its own API, to prove the release gate rolls it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    /// Every API route but `/api/health` answers 500.
    Errors,
    /// Every API route but `/api/health` answers this many milliseconds late.
    Slow { delay_ms: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub environment: Environment,
    pub database: Option<DatabaseConfig>,
    pub session: SessionPolicy,
    /// Only ever set in development (refused in production).
    pub injected_fault: Option<InjectedFault>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    UnknownEnvironment(String),
    /// One of the URL / token pair is set without the other.
    IncompleteDatabase {
        missing: &'static str,
    },
    BadDatabaseUrl(String),
    BadNumber {
        name: &'static str,
        value: String,
    },
    BadFault(String),
    FaultInProduction,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownEnvironment(value) => {
                write!(f, "EDGESTACK_ENV must be `production` or `development`, not `{value}`")
            }
            Self::IncompleteDatabase { missing } => write!(f, "{missing} is not set"),
            Self::BadFault(value) => write!(f, "EDGESTACK_INJECT_FAULT must be `errors` or `slow:<ms>`, not `{value}`"),
            Self::FaultInProduction => f.write_str("EDGESTACK_INJECT_FAULT is refused in production"),
            Self::BadNumber { name, value } => write!(f, "{name} must be a positive whole number, not `{value}`"),
            Self::BadDatabaseUrl(url) => {
                write!(f, "LIBSQL_PRIMARY_URL must start with https://, http:// or libsql://, not `{url}`")
            }
        }
    }
}

pub const ENVIRONMENT_VAR: &str = "EDGESTACK_ENV";
pub const PRIMARY_URL_SECRET: &str = "LIBSQL_PRIMARY_URL";
pub const AUTH_TOKEN_SECRET: &str = "LIBSQL_AUTH_TOKEN";
pub const INJECT_FAULT_VAR: &str = "EDGESTACK_INJECT_FAULT";
pub const SESSION_IDLE_VAR: &str = "SESSION_IDLE_SECONDS";
pub const SESSION_ABSOLUTE_VAR: &str = "SESSION_ABSOLUTE_SECONDS";

impl Config {
    /// `lookup` returns a var or secret by name, `None` when unset or empty.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let environment = match lookup(ENVIRONMENT_VAR).as_deref().map(str::trim) {
            None | Some("production") => Environment::Production,
            Some("development") => Environment::Development,
            Some(other) => return Err(ConfigError::UnknownEnvironment(other.to_string())),
        };
        let database = match (lookup(PRIMARY_URL_SECRET), lookup(AUTH_TOKEN_SECRET)) {
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::IncompleteDatabase { missing: AUTH_TOKEN_SECRET }),
            (None, Some(_)) => return Err(ConfigError::IncompleteDatabase { missing: PRIMARY_URL_SECRET }),
            (Some(url), Some(token)) => {
                Some(DatabaseConfig { primary_url: normalize_database_url(&url)?, auth_token: token })
            }
        };
        let defaults = SessionPolicy::default();
        let seconds = |name: &'static str, default_ms: i64| -> Result<i64, ConfigError> {
            match lookup(name) {
                None => Ok(default_ms),
                Some(value) => value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|s| (1..=366 * 24 * 3600).contains(s))
                    .map(|s| s * 1000)
                    .ok_or(ConfigError::BadNumber { name, value }),
            }
        };
        let session = SessionPolicy {
            idle_ms: seconds(SESSION_IDLE_VAR, defaults.idle_ms)?,
            absolute_ms: seconds(SESSION_ABSOLUTE_VAR, defaults.absolute_ms)?,
        };
        let injected_fault = match lookup(INJECT_FAULT_VAR) {
            None => None,
            Some(_) if environment == Environment::Production => return Err(ConfigError::FaultInProduction),
            Some(value) => Some(parse_fault(value.trim()).ok_or(ConfigError::BadFault(value))?),
        };
        Ok(Self { environment, database, session, injected_fault })
    }

    /// Development-only behaviour (the region override header) is allowed only here.
    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }
}

fn parse_fault(value: &str) -> Option<InjectedFault> {
    match value.split_once(':') {
        None if value == "errors" => Some(InjectedFault::Errors),
        Some(("slow", delay)) => delay.parse().ok().map(|delay_ms| InjectedFault::Slow { delay_ms }),
        _ => None,
    }
}

fn normalize_database_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let normalized = if let Some(rest) = url.strip_prefix("libsql://") {
        format!("https://{rest}")
    } else if url.starts_with("https://") || url.starts_with("http://") {
        url.to_string()
    } else {
        return Err(ConfigError::BadDatabaseUrl(url.to_string()));
    };
    let has_host = normalized.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
    if has_host { Ok(normalized) } else { Err(ConfigError::BadDatabaseUrl(url.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn empty_lookup_is_production_without_database() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.database, None);
        assert!(!config.is_development());
    }

    #[test]
    fn development_is_explicit() {
        assert!(parse(&[("EDGESTACK_ENV", "development")]).unwrap().is_development());
        assert_eq!(parse(&[("EDGESTACK_ENV", "dev")]), Err(ConfigError::UnknownEnvironment("dev".into())));
    }

    #[test]
    fn database_needs_url_and_token() {
        assert_eq!(
            parse(&[("LIBSQL_PRIMARY_URL", "http://127.0.0.1:8080")]),
            Err(ConfigError::IncompleteDatabase { missing: "LIBSQL_AUTH_TOKEN" })
        );
        assert_eq!(
            parse(&[("LIBSQL_AUTH_TOKEN", "t")]),
            Err(ConfigError::IncompleteDatabase { missing: "LIBSQL_PRIMARY_URL" })
        );
        let config = parse(&[("LIBSQL_PRIMARY_URL", "libsql://db.turso.io/"), ("LIBSQL_AUTH_TOKEN", "t")]).unwrap();
        let database = config.database.unwrap();
        assert_eq!(database.primary_url, "https://db.turso.io");
        assert_eq!(database.auth_token, "t");
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let config = parse(&[("LIBSQL_PRIMARY_URL", "http://x"), ("LIBSQL_AUTH_TOKEN", "s3cret")]).unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn session_lifetimes_are_configurable() {
        let config = parse(&[("SESSION_IDLE_SECONDS", "2"), ("SESSION_ABSOLUTE_SECONDS", "5")]).unwrap();
        assert_eq!(config.session, SessionPolicy { idle_ms: 2_000, absolute_ms: 5_000 });
        assert_eq!(parse(&[]).unwrap().session, SessionPolicy::default());
        for bad in ["0", "-1", "abc", "1.5"] {
            assert!(matches!(parse(&[("SESSION_IDLE_SECONDS", bad)]), Err(ConfigError::BadNumber { .. })), "{bad}");
        }
    }

    #[test]
    fn faults_only_in_development() {
        let dev = |fault: &str| parse(&[("EDGESTACK_ENV", "development"), ("EDGESTACK_INJECT_FAULT", fault)]);
        assert_eq!(dev("errors").unwrap().injected_fault, Some(InjectedFault::Errors));
        assert_eq!(dev("slow:250").unwrap().injected_fault, Some(InjectedFault::Slow { delay_ms: 250 }));
        assert!(matches!(dev("slow"), Err(ConfigError::BadFault(_))));
        assert!(matches!(dev("crash"), Err(ConfigError::BadFault(_))));
        assert_eq!(parse(&[("EDGESTACK_INJECT_FAULT", "errors")]), Err(ConfigError::FaultInProduction));
        assert_eq!(parse(&[]).unwrap().injected_fault, None);
    }

    #[test]
    fn rejects_other_schemes() {
        for url in ["ftp://x", "127.0.0.1:8080", "https://", "libsql://"] {
            assert!(
                matches!(
                    parse(&[("LIBSQL_PRIMARY_URL", url), ("LIBSQL_AUTH_TOKEN", "t")]),
                    Err(ConfigError::BadDatabaseUrl(_))
                ),
                "{url}"
            );
        }
    }
}
