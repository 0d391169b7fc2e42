//! Worker configuration, parsed once per request from a name → value lookup (vars and secrets).

use std::fmt;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::accounts::SessionPolicy;
use crate::datapath::{Endpoint, Role, Topology};
use crate::notes::page::signing_key_id;
use crate::region::RegionName;
use crate::services::Service;
use crate::services::identity::{IdentitySigner, IdentityVerifier, decode_key};

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
    /// A request carrying `x-edgestack-panic` panics (the wasm instance traps), so a test can
    /// prove that the next request is answered by a recovered instance.
    PanicOnRequest,
}

/// Where reads and writes go, and how they are cached (Levels 3 and 4).
#[derive(Clone, PartialEq, Eq)]
pub struct DataPathConfig {
    /// The deployment's database (`main`, `accounts` or `notes`): the audience its
    /// read-your-writes tokens are bound to, and the key of its primary record in KV.
    pub database: &'static str,
    pub primary_region: RegionName,
    /// Replica URLs by region; empty means every read goes to the primary.
    pub replicas: BTreeMap<RegionName, String>,
    /// Signs read-your-writes tokens and page cursors: `CONSISTENCY_KEY`, or derived from the
    /// database token.
    pub consistency_key: Vec<u8>,
    /// Names `consistency_key` in the feed's cache keys (`notes::page::signing_key_id`), worked
    /// out once with the configuration rather than on every feed request.
    pub cursor_key_id: String,
    pub read_cache: bool,
    pub replica_deadline_ms: u32,
    pub primary_deadline_ms: u32,
}

impl fmt::Debug for DataPathConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPathConfig")
            .field("database", &self.database)
            .field("primary_region", &self.primary_region)
            .field("replicas", &self.replicas)
            .field("consistency_key", &"<redacted>")
            .field("read_cache", &self.read_cache)
            .finish()
    }
}

impl DataPathConfig {
    pub fn topology(&self, database: &DatabaseConfig) -> Topology {
        let mut topology = Topology::primary_only(&database.primary_url, self.primary_region.clone());
        for (region, url) in &self.replicas {
            topology
                .replicas
                .insert(region.clone(), Endpoint { url: url.clone(), region: region.clone(), role: Role::Replica });
        }
        topology
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub environment: Environment,
    pub database: Option<DatabaseConfig>,
    pub data_path: DataPathConfig,
    /// Development only: the region of requests that carry no override header.
    pub dev_region: Option<RegionName>,
    pub session: SessionPolicy,
    /// Only ever set in development (refused in production).
    pub injected_fault: Option<InjectedFault>,
    pub service: Service,
    /// `accounts` only: signs identities for the other services.
    pub identity_signer: Option<IdentitySigner>,
    /// `entry` and `notes`: checks identities `accounts` signed.
    pub identity_verifier: Option<IdentityVerifier>,
    /// How long a call to another service (`entry` → `accounts`/`notes`, `accounts` → `notes`)
    /// may take before it is given up, in milliseconds: `SERVICE_DEADLINE_MS`, default
    /// [`SERVICE_DEADLINE_DEFAULT_MS`].
    pub service_deadline_ms: u32,
}

/// A service call's default deadline: above the longest a healthy service takes to answer or
/// to give up itself (a read waiting out a failover, then the new primary: three primary
/// deadlines of 5 s), so that it only cuts a service that hangs. The runtime sets no wall-clock
/// limit on a request while its client waits, so without one a hung service holds every
/// request that reaches it.
pub const SERVICE_DEADLINE_DEFAULT_MS: u32 = 20_000;

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
    BadRegion {
        name: &'static str,
        value: String,
    },
    BadReplicas(String),
    DevOnly(&'static str),
    BadSwitch {
        name: &'static str,
        value: String,
    },
    UnknownService(String),
    /// A key that is not 32 bytes of unpadded base64url.
    BadKey(&'static str),
    /// A setting this service cannot run without.
    MissingSetting {
        service: &'static str,
        name: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownEnvironment(value) => {
                write!(f, "EDGESTACK_ENV must be `production` or `development`, not `{value}`")
            }
            Self::IncompleteDatabase { missing } => write!(f, "{missing} is not set"),
            Self::BadRegion { name, value } => write!(f, "{name} must be a region name like `eu`, not `{value}`"),
            Self::BadReplicas(why) => write!(f, "LIBSQL_REPLICAS must look like `eu=https://…,ap=https://…`: {why}"),
            Self::DevOnly(name) => write!(f, "{name} is refused in production"),
            Self::BadSwitch { name, value } => write!(f, "{name} must be `on` or `off`, not `{value}`"),
            Self::UnknownService(value) => {
                write!(f, "EDGESTACK_SERVICE must be `monolith`, `entry`, `accounts` or `notes`, not `{value}`")
            }
            Self::BadKey(name) => write!(f, "{name} must be 32 bytes of unpadded base64url"),
            Self::MissingSetting { service, name } => write!(f, "the {service} service needs {name}"),
            Self::BadFault(value) => {
                write!(f, "EDGESTACK_INJECT_FAULT must be `errors`, `slow:<ms>` or `panic`, not `{value}`")
            }
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
pub const PRIMARY_REGION_VAR: &str = "LIBSQL_PRIMARY_REGION";
pub const REPLICAS_VAR: &str = "LIBSQL_REPLICAS";
pub const CONSISTENCY_KEY_SECRET: &str = "CONSISTENCY_KEY";
pub const READ_CACHE_VAR: &str = "READ_CACHE";
pub const DEV_REGION_VAR: &str = "EDGESTACK_DEV_REGION";
pub const REPLICA_DEADLINE_VAR: &str = "REPLICA_DEADLINE_MS";
pub const SERVICE_DEADLINE_VAR: &str = "SERVICE_DEADLINE_MS";
pub const INJECT_FAULT_VAR: &str = "EDGESTACK_INJECT_FAULT";
pub const SESSION_IDLE_VAR: &str = "SESSION_IDLE_SECONDS";
pub const SESSION_ABSOLUTE_VAR: &str = "SESSION_ABSOLUTE_SECONDS";
pub const SERVICE_VAR: &str = "EDGESTACK_SERVICE";
pub const IDENTITY_SIGNING_KEY_SECRET: &str = "IDENTITY_SIGNING_KEY";
pub const IDENTITY_PUBLIC_KEY_VAR: &str = "IDENTITY_PUBLIC_KEY";

impl Config {
    /// The deadline of a call made while answering another service's call (`accounts` telling
    /// `notes` of an account deletion while the entry waits for `accounts`): a quarter of
    /// `service_deadline_ms`, so that the caller's deadline still covers this service's own
    /// database work after it. Such a call must be one whose failure the service can absorb
    /// (the deletion's outbox row is retried by the cron).
    pub fn nested_service_deadline_ms(&self) -> u32 {
        (self.service_deadline_ms / 4).max(1)
    }

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
        let deadline = |name: &'static str, default_ms: u32| -> Result<u32, ConfigError> {
            match lookup(name) {
                None => Ok(default_ms),
                Some(value) => value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|ms| (1..=60_000).contains(ms))
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
        let service = match lookup(SERVICE_VAR) {
            None => Service::Monolith,
            Some(value) => Service::parse(&value).ok_or(ConfigError::UnknownService(value))?,
        };
        let consistency_key = match (lookup(CONSISTENCY_KEY_SECRET), &database) {
            (Some(key), _) => key.into_bytes(),
            // Only the worker knows the database token, so a key derived from it is as secret.
            (None, Some(database)) => Sha256::digest(format!("edgestack-consistency:{}", database.auth_token)).to_vec(),
            (None, None) => Vec::new(),
        };
        let data_path = DataPathConfig {
            database: database_name(service),
            primary_region: region_var(&lookup, PRIMARY_REGION_VAR)?
                .unwrap_or_else(|| RegionName::from_continent("NA")),
            replicas: parse_replicas(lookup(REPLICAS_VAR).as_deref().unwrap_or(""))?,
            cursor_key_id: signing_key_id(&consistency_key),
            consistency_key,
            read_cache: match lookup(READ_CACHE_VAR).as_deref().map(str::trim) {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(ConfigError::BadSwitch { name: READ_CACHE_VAR, value: other.to_string() }),
            },
            replica_deadline_ms: deadline(REPLICA_DEADLINE_VAR, 300)?,
            primary_deadline_ms: 5_000,
        };
        let dev_region = region_var(&lookup, DEV_REGION_VAR)?;
        if dev_region.is_some() && environment == Environment::Production {
            return Err(ConfigError::DevOnly(DEV_REGION_VAR));
        }
        let key = |name: &'static str| -> Result<Option<[u8; 32]>, ConfigError> {
            lookup(name).map(|value| decode_key(&value).ok_or(ConfigError::BadKey(name))).transpose()
        };
        let identity_signer = key(IDENTITY_SIGNING_KEY_SECRET)?.map(|seed| IdentitySigner::from_seed(&seed));
        let identity_verifier = match key(IDENTITY_PUBLIC_KEY_VAR)? {
            Some(public) => {
                Some(IdentityVerifier::from_public_key(&public).ok_or(ConfigError::BadKey(IDENTITY_PUBLIC_KEY_VAR))?)
            }
            None => None,
        };
        let missing = |name| ConfigError::MissingSetting { service: service.as_str(), name };
        match service {
            Service::Accounts if identity_signer.is_none() => return Err(missing(IDENTITY_SIGNING_KEY_SECRET)),
            Service::Entry | Service::Notes if identity_verifier.is_none() => {
                return Err(missing(IDENTITY_PUBLIC_KEY_VAR));
            }
            _ => {}
        }
        Ok(Self {
            environment,
            database,
            data_path,
            dev_region,
            session,
            injected_fault,
            service,
            identity_signer,
            identity_verifier,
            service_deadline_ms: deadline(SERVICE_DEADLINE_VAR, SERVICE_DEADLINE_DEFAULT_MS)?,
        })
    }

    /// Development-only behaviour (the region override header) is allowed only here.
    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }
}

/// The database a deployment of `service` owns. Each service has its own database, and a token
/// or a primary record of one must never be taken for another's; the entry owns none.
fn database_name(service: Service) -> &'static str {
    match service {
        Service::Monolith | Service::Entry => "main",
        Service::Accounts => "accounts",
        Service::Notes => "notes",
    }
}

fn region_var(lookup: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<RegionName>, ConfigError> {
    lookup(name).map(|value| RegionName::parse(&value).ok_or(ConfigError::BadRegion { name, value })).transpose()
}

/// `eu=https://a,ap=https://b` → `{eu: https://a, ap: https://b}`.
fn parse_replicas(value: &str) -> Result<BTreeMap<RegionName, String>, ConfigError> {
    let mut replicas = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (region, url) =
            entry.split_once('=').ok_or_else(|| ConfigError::BadReplicas(format!("`{entry}` has no `=`")))?;
        let region =
            RegionName::parse(region).ok_or_else(|| ConfigError::BadReplicas(format!("bad region `{region}`")))?;
        let url = normalize_database_url(url).map_err(|_| ConfigError::BadReplicas(format!("bad URL `{url}`")))?;
        if replicas.insert(region.clone(), url).is_some() {
            return Err(ConfigError::BadReplicas(format!("region `{}` twice", region.as_str())));
        }
    }
    Ok(replicas)
}

fn parse_fault(value: &str) -> Option<InjectedFault> {
    match value.split_once(':') {
        None if value == "errors" => Some(InjectedFault::Errors),
        None if value == "panic" => Some(InjectedFault::PanicOnRequest),
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
    fn deadlines_are_whole_milliseconds_up_to_a_minute() {
        let defaults = parse(&[]).unwrap();
        assert_eq!((defaults.data_path.replica_deadline_ms, defaults.service_deadline_ms), (300, 20_000));
        let set = parse(&[("REPLICA_DEADLINE_MS", " 120 "), ("SERVICE_DEADLINE_MS", "60000")]).unwrap();
        assert_eq!((set.data_path.replica_deadline_ms, set.service_deadline_ms), (120, 60_000));
        assert_eq!((defaults.nested_service_deadline_ms(), set.nested_service_deadline_ms()), (5_000, 15_000));
        assert_eq!(parse(&[("SERVICE_DEADLINE_MS", "3")]).unwrap().nested_service_deadline_ms(), 1, "never zero");
        for name in ["REPLICA_DEADLINE_MS", "SERVICE_DEADLINE_MS"] {
            for bad in ["0", "-5", "60001", "1.5", "soon"] {
                assert_eq!(
                    parse(&[(name, bad)]),
                    Err(ConfigError::BadNumber { name, value: bad.to_string() }),
                    "{name}={bad}"
                );
            }
        }
    }

    #[test]
    fn faults_only_in_development() {
        let dev = |fault: &str| parse(&[("EDGESTACK_ENV", "development"), ("EDGESTACK_INJECT_FAULT", fault)]);
        assert_eq!(dev("errors").unwrap().injected_fault, Some(InjectedFault::Errors));
        assert_eq!(dev("slow:250").unwrap().injected_fault, Some(InjectedFault::Slow { delay_ms: 250 }));
        assert!(matches!(dev("slow"), Err(ConfigError::BadFault(_))));
        assert_eq!(dev("panic").unwrap().injected_fault, Some(InjectedFault::PanicOnRequest));
        assert!(matches!(dev("crash"), Err(ConfigError::BadFault(_))));
        assert_eq!(parse(&[("EDGESTACK_INJECT_FAULT", "errors")]), Err(ConfigError::FaultInProduction));
        assert_eq!(parse(&[]).unwrap().injected_fault, None);
    }

    #[test]
    fn replicas_and_data_path() {
        let config = parse(&[
            ("LIBSQL_PRIMARY_URL", "http://p"),
            ("LIBSQL_AUTH_TOKEN", "t"),
            ("LIBSQL_REPLICAS", " eu=http://e , ap=libsql://a.turso.io"),
            ("LIBSQL_PRIMARY_REGION", "na"),
            ("READ_CACHE", "off"),
        ])
        .unwrap();
        let replicas: Vec<(&str, &str)> =
            config.data_path.replicas.iter().map(|(r, u)| (r.as_str(), u.as_str())).collect();
        assert_eq!(replicas, [("ap", "https://a.turso.io"), ("eu", "http://e")]);
        assert!(!config.data_path.read_cache);
        assert!(!config.data_path.consistency_key.is_empty(), "derived from the token");
        assert!(!format!("{:?}", config.data_path).contains(&hex_of(&config.data_path.consistency_key)));
        let topology = config.data_path.topology(config.database.as_ref().unwrap());
        assert_eq!(topology.replicas.len(), 2);
        for bad in ["eu", "eu=ftp://x", "EU!=http://x", "eu=http://a,eu=http://b"] {
            assert!(matches!(parse(&[("LIBSQL_REPLICAS", bad)]), Err(ConfigError::BadReplicas(_))), "{bad}");
        }
        assert!(matches!(parse(&[("READ_CACHE", "maybe")]), Err(ConfigError::BadSwitch { .. })));
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn dev_region_only_in_development() {
        let dev = parse(&[("EDGESTACK_ENV", "development"), ("EDGESTACK_DEV_REGION", "eu")]).unwrap();
        assert_eq!(dev.dev_region.map(|r| r.as_str().to_string()), Some("eu".to_string()));
        assert_eq!(parse(&[("EDGESTACK_DEV_REGION", "eu")]), Err(ConfigError::DevOnly("EDGESTACK_DEV_REGION")));
    }

    #[test]
    fn services_need_their_identity_keys() {
        let signer = IdentitySigner::from_seed(&[4; 32]);
        let public = crate::services::identity::encode_key(&signer.verifying_key());
        let seed = crate::services::identity::encode_key(&[4; 32]);
        assert_eq!(parse(&[]).unwrap().service, Service::Monolith);
        assert!(matches!(parse(&[(SERVICE_VAR, "accounts")]), Err(ConfigError::MissingSetting { .. })));
        assert!(matches!(parse(&[(SERVICE_VAR, "notes")]), Err(ConfigError::MissingSetting { .. })));
        assert!(matches!(parse(&[(SERVICE_VAR, "gateway")]), Err(ConfigError::UnknownService(_))));
        assert_eq!(parse(&[(IDENTITY_PUBLIC_KEY_VAR, "short")]), Err(ConfigError::BadKey(IDENTITY_PUBLIC_KEY_VAR)));
        let accounts = parse(&[(SERVICE_VAR, "accounts"), (IDENTITY_SIGNING_KEY_SECRET, &seed)]).unwrap();
        assert_eq!(accounts.identity_signer, Some(signer));
        assert!(!format!("{accounts:?}").contains(&seed), "the signing key is redacted");
        let notes = parse(&[(SERVICE_VAR, "notes"), (IDENTITY_PUBLIC_KEY_VAR, &public)]).unwrap();
        assert!(notes.identity_verifier.is_some());
        let databases = (parse(&[]).unwrap().data_path.database, accounts.data_path.database, notes.data_path.database);
        assert_eq!(databases, ("main", "accounts", "notes"), "each service's tokens and record are its own");
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
