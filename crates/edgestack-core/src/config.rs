//! Worker configuration, parsed once per request from a name → value lookup (vars and secrets).

use std::fmt;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub environment: Environment,
    pub database: Option<DatabaseConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    UnknownEnvironment(String),
    /// One of the URL / token pair is set without the other.
    IncompleteDatabase {
        missing: &'static str,
    },
    BadDatabaseUrl(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownEnvironment(value) => {
                write!(f, "EDGESTACK_ENV must be `production` or `development`, not `{value}`")
            }
            Self::IncompleteDatabase { missing } => write!(f, "{missing} is not set"),
            Self::BadDatabaseUrl(url) => {
                write!(f, "LIBSQL_PRIMARY_URL must start with https://, http:// or libsql://, not `{url}`")
            }
        }
    }
}

pub const ENVIRONMENT_VAR: &str = "EDGESTACK_ENV";
pub const PRIMARY_URL_SECRET: &str = "LIBSQL_PRIMARY_URL";
pub const AUTH_TOKEN_SECRET: &str = "LIBSQL_AUTH_TOKEN";

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
        Ok(Self { environment, database })
    }

    /// Development-only behaviour (the region override header) is allowed only here.
    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
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
