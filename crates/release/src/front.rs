//! The production front Worker's rule (`front/`, docs/releases.md): which requests it pins to the
//! canary version with `Cloudflare-Workers-Version-Overrides`, and the vars that carry the rule.
//!
//! `release deploy` writes the rule (`wrangler deploy --config front/wrangler.toml --var …`) and
//! the front Worker reads it once per isolate, so both sides use [`rule_vars`] and
//! [`FrontConfig::from_lookup`] and never disagree on a name or a format.
//!
//! Every request also carries a version key (`Cloudflare-Workers-Version-Key`, [`Affinity`]):
//! Cloudflare hashes it to pick a version of a gradual deployment, so one key means one version
//! at every percentage stage, and a key on the new version stays there as its share grows.
//! Without it each request is assigned at random, and a user flips between the two versions
//! from one request to the next (a page and its assets included). The key is the user's
//! `edgestack_canary` cookie, minted here on the first visit as the local gateway mints it.
//!
//! A request goes to the canary only when its location is known and folds to a canary region;
//! anything else — no rule, no `request.cf`, a continent code we do not know, another region, or
//! a client that already names the app Worker in its own override — passes through without an
//! override and gets what the gradual deployment's percentages give its version key. Unknown never means canary.

use std::borrow::Cow;
use std::collections::BTreeSet;

use edgestack_core::error::{Described, RETRY_UNAVAILABLE_SECONDS};
use edgestack_core::region::RegionName;
use sfv::FieldType;

use crate::routing::{StickyKey, override_dictionary, pinned_in, sticky_key_from_cookies};

/// The front Worker's service binding to the app Worker (`[[services]]` in front/wrangler.toml).
pub const APP_BINDING: &str = "APP";
/// The app Worker's name, as the override header must name it (its `name` in wrangler.toml).
pub const APP_WORKER_VAR: &str = "FRONT_APP_WORKER";
/// The canary's version id (what `wrangler versions upload` printed); empty: no rule.
pub const CANARY_VERSION_VAR: &str = "FRONT_CANARY_VERSION";
/// Regions whose users get the canary, comma-separated (`eu`, `eu,ap`); empty: no rule.
pub const CANARY_REGIONS_VAR: &str = "FRONT_CANARY_REGIONS";
/// `development` honours the `x-edgestack-region` header (request.cf is a placeholder locally).
pub const ENV_VAR: &str = "EDGESTACK_ENV";

/// Cloudflare's continent codes (`request.cf.continent`); any other value is an unknown location.
const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// One region's users pinned to one version of the app Worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub version: String,
    pub regions: BTreeSet<RegionName>,
}

/// The front Worker's configuration, parsed once per isolate from its vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontConfig {
    pub app_worker: String,
    pub canary: Option<Canary>,
    pub development: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontConfigError {
    MissingAppWorker,
    BadAppWorker(String),
    BadVersion(String),
    BadRegion(String),
    /// A version without regions or regions without a version: half a rule is no rule.
    Incomplete,
}

impl std::fmt::Display for FrontConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingAppWorker => write!(f, "{APP_WORKER_VAR} is not set"),
            Self::BadAppWorker(name) => write!(f, "{APP_WORKER_VAR}: `{name}` is not a Worker name"),
            Self::BadVersion(version) => write!(f, "{CANARY_VERSION_VAR}: `{version}` is not a version id"),
            Self::BadRegion(region) => write!(f, "{CANARY_REGIONS_VAR}: `{region}` is not a region name"),
            Self::Incomplete => {
                write!(f, "{CANARY_VERSION_VAR} and {CANARY_REGIONS_VAR} must both be set, or both empty")
            }
        }
    }
}

impl std::error::Error for FrontConfigError {}

/// Lowercase letters, digits and `-`, as Cloudflare names Workers, starting with a letter: the
/// override header names it as a dictionary key (RFC 8941 §3.1.2).
fn is_worker_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A version id as it can stand inside the override header's quoted string: Cloudflare's ids are
/// UUIDs; the local gateway also takes `blue` / `green`.
fn is_version_id(version: &str) -> bool {
    (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl FrontConfig {
    /// Reads the vars through `lookup` (the Worker's `env.var`); an empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, FrontConfigError> {
        let var = |name: &str| lookup(name).map(|value| value.trim().to_string()).filter(|value| !value.is_empty());
        let app_worker = var(APP_WORKER_VAR).ok_or(FrontConfigError::MissingAppWorker)?;
        if !is_worker_name(&app_worker) {
            return Err(FrontConfigError::BadAppWorker(app_worker));
        }
        let canary = match (var(CANARY_VERSION_VAR), var(CANARY_REGIONS_VAR)) {
            (None, None) => None,
            (Some(version), Some(regions)) => {
                if !is_version_id(&version) {
                    return Err(FrontConfigError::BadVersion(version));
                }
                Some(Canary { version, regions: parse_regions(&regions)? })
            }
            _ => return Err(FrontConfigError::Incomplete),
        };
        let development = var(ENV_VAR).as_deref() == Some("development");
        Ok(Self { app_worker, canary, development })
    }

    /// Where a request goes: through unchanged, or pinned to the canary.
    pub fn route(&self, visit: &Visit<'_>) -> Route {
        let Some(canary) = &self.canary else {
            return Route::PassThrough(PassReason::NoRule);
        };
        // Parsed once: a tester's own pin for the app Worker wins (as the gateway's override
        // beats its split), and the canary's entry joins the rest.
        let overrides = visit.overrides.and_then(override_dictionary);
        if overrides.as_ref().and_then(|overrides| pinned_in(overrides, &self.app_worker)).is_some() {
            return Route::PassThrough(PassReason::ClientOverride);
        }
        let region =
            RegionName::from_override(visit.dev_region, self.development).or_else(|| continent_region(visit.continent));
        match region {
            None => Route::PassThrough(PassReason::UnknownLocation),
            Some(region) if canary.regions.contains(&region) => {
                Route::Canary { overrides: with_override(overrides, &self.app_worker, &canary.version) }
            }
            Some(region) => Route::PassThrough(PassReason::OtherRegion(region)),
        }
    }
}

/// What the front Worker knows about a request when it decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct Visit<'a> {
    /// `request.cf.continent`; `None` when the runtime gave no `cf` or no continent.
    pub continent: Option<&'a str>,
    /// The `x-edgestack-region` header, honoured only in development.
    pub dev_region: Option<&'a str>,
    /// The request's own `Cloudflare-Workers-Version-Overrides`, if any.
    pub overrides: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forward the request as it came.
    PassThrough(PassReason),
    /// Forward it with this `Cloudflare-Workers-Version-Overrides` value.
    Canary { overrides: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassReason {
    NoRule,
    /// No `cf`, no continent, or a code that is not one of Cloudflare's seven.
    UnknownLocation,
    OtherRegion(RegionName),
    ClientOverride,
}

/// The region of a known continent code (`RegionName::from_continent`'s fold); `None` for a
/// missing or unknown one. (`from_continent` itself sends unknown codes to `na` for the choice of
/// a database replica, where some answer is needed; for a canary, unknown means not chosen.)
pub fn continent_region(continent: Option<&str>) -> Option<RegionName> {
    let code = continent?.trim().to_ascii_uppercase();
    CONTINENTS.contains(&code.as_str()).then(|| RegionName::from_continent(&code))
}

/// The request's override dictionary (RFC 8941) with the app Worker's entry set (other
/// Workers' entries kept): added last, or in the place of a client's entry for it that pins
/// nothing (not a string, or empty), since a dictionary holds each key once. A header that is
/// no dictionary is replaced: Cloudflare ignores an invalid one whole, so appending to it would
/// lose ours too.
fn with_override(existing: Option<sfv::Dictionary>, app_worker: &str, version: &str) -> String {
    let mut overrides = existing.unwrap_or_default();
    // Both hold for a `FrontConfig` (`from_lookup` checks them).
    if let (Ok(key), Ok(value)) = (sfv::Key::from_string(app_worker.into()), sfv::String::from_string(version.into())) {
        overrides.insert(key, sfv::Item::new(value).into());
    }
    overrides.serialize().unwrap_or_default()
}

/// Where a request's version key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affinity {
    /// The user's `edgestack_canary` cookie: forward with it as the version key (replacing any
    /// key the client put in the header itself).
    Cookie(StickyKey),
    /// No cookie, but the client sends a version key of its own (an API client that keeps
    /// itself on one version): forwarded as it came, nothing minted.
    ClientKey,
    /// A new visitor (or a cookie that is no key): forward with this new key and set it as the
    /// cookie on the answer, so the first request and every later one share it.
    Minted(StickyKey),
}

impl Affinity {
    /// The key to forward as [`VERSION_KEY_HEADER`](crate::routing::VERSION_KEY_HEADER); `None`: the client's own, unchanged.
    pub fn key(&self) -> Option<&StickyKey> {
        match self {
            Self::Cookie(key) | Self::Minted(key) => Some(key),
            Self::ClientKey => None,
        }
    }
}

/// The version key of a request with `cookies` (its `Cookie` header) and `client_key` (its own
/// `Cloudflare-Workers-Version-Key`); `random` gives a new key's 16 bytes when one is minted.
pub fn affinity(cookies: Option<&str>, client_key: Option<&str>, random: impl FnOnce() -> [u8; 16]) -> Affinity {
    if let Some(key) = cookies.and_then(sticky_key_from_cookies) {
        return Affinity::Cookie(key);
    }
    if client_key.is_some_and(|key| !key.trim().is_empty()) {
        return Affinity::ClientKey;
    }
    Affinity::Minted(StickyKey::from_random(random()))
}

/// The front's answer when its call to the app Worker rejects — the app threw, or the runtime
/// stopped it at a limit — instead of the runtime's own HTML error page: the API's
/// `503 service_unavailable` with `Retry-After: 5` (JSON `{"error": {"code", "message"}}`), as the
/// entry Worker answers a service binding that fails (`ApiError::ServiceUnavailable`), for the
/// site's pages too (the front cannot tell what the app would have answered).
pub fn app_failed() -> Described<'static> {
    Described {
        status: 503,
        code: "service_unavailable",
        message: Cow::Borrowed("the site's app did not answer; try again shortly"),
        header: Some(("Retry-After", Cow::Borrowed(RETRY_UNAVAILABLE_SECONDS))),
    }
}

fn parse_regions(text: &str) -> Result<BTreeSet<RegionName>, FrontConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            RegionName::parse(entry)
                .filter(|region| region.as_str() == entry)
                .ok_or_else(|| FrontConfigError::BadRegion(entry.to_string()))
        })
        .collect()
}

/// The vars that put `canary` in force on the front Worker (`None` clears the rule), in the
/// order `release deploy` passes them as `--var NAME:VALUE`.
pub fn rule_vars(app_worker: &str, canary: Option<&Canary>) -> Vec<(&'static str, String)> {
    let (version, regions) = match canary {
        Some(canary) => {
            (canary.version.clone(), canary.regions.iter().map(RegionName::as_str).collect::<Vec<_>>().join(","))
        }
        None => (String::new(), String::new()),
    };
    vec![(APP_WORKER_VAR, app_worker.to_string()), (CANARY_VERSION_VAR, version), (CANARY_REGIONS_VAR, regions)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREEN: &str = "5d3e8a2c-0bd1-4c9a-9d8c-1f5e3a7b9c01";

    fn config(regions: &str, development: bool) -> FrontConfig {
        let vars = [
            (APP_WORKER_VAR, "edgestack"),
            (CANARY_VERSION_VAR, GREEN),
            (CANARY_REGIONS_VAR, regions),
            (ENV_VAR, if development { "development" } else { "production" }),
        ];
        FrontConfig::from_lookup(|name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string()))
            .unwrap()
    }

    fn pinned() -> Route {
        Route::Canary { overrides: format!("edgestack=\"{GREEN}\"") }
    }

    fn region(name: &str) -> RegionName {
        RegionName::parse(name).unwrap()
    }

    /// One row per input: the continent `request.cf` reports (`None`: no cf, or no continent).
    fn check(config: &FrontConfig, continent: Option<&str>, expected: Route) {
        let visit = Visit { continent, ..Visit::default() };
        assert_eq!(config.route(&visit), expected, "continent {continent:?}");
    }

    #[test]
    fn an_eu_canary_pins_europe_and_africa_and_passes_every_other_continent() {
        let eu = config("eu", false);
        check(&eu, Some("EU"), pinned());
        check(&eu, Some("AF"), pinned());
        check(&eu, Some("eu"), pinned());
        for (continent, folds_to) in [("NA", "na"), ("SA", "na"), ("AN", "na"), ("AS", "ap"), ("OC", "ap")] {
            check(&eu, Some(continent), Route::PassThrough(PassReason::OtherRegion(region(folds_to))));
        }
    }

    #[test]
    fn each_region_canary_pins_exactly_its_continents() {
        let expected: [(&str, &[&str]); 3] =
            [("eu", &["EU", "AF"]), ("ap", &["AS", "OC"]), ("na", &["NA", "SA", "AN"])];
        for (canary_region, its_continents) in expected {
            let config = config(canary_region, false);
            for continent in CONTINENTS {
                let route = config.route(&Visit { continent: Some(continent), ..Visit::default() });
                assert_eq!(
                    matches!(route, Route::Canary { .. }),
                    its_continents.contains(continent),
                    "{canary_region} canary, continent {continent}: {route:?}"
                );
            }
        }
    }

    #[test]
    fn a_missing_or_unknown_location_is_never_the_canary() {
        // Even when the canary region is `na`, where from_continent sends unknown codes.
        for canary_region in ["eu", "na", "ap"] {
            let config = config(canary_region, false);
            for continent in [None, Some(""), Some("  "), Some("T1"), Some("XX"), Some("EUROPE"), Some("e")] {
                check(&config, continent, Route::PassThrough(PassReason::UnknownLocation));
            }
        }
    }

    #[test]
    fn without_a_rule_everything_passes_through() {
        let vars = [(APP_WORKER_VAR, "edgestack"), (CANARY_VERSION_VAR, ""), (CANARY_REGIONS_VAR, "")];
        let config =
            FrontConfig::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())).unwrap();
        assert_eq!(config.canary, None);
        for continent in [Some("EU"), Some("NA"), None] {
            check(&config, continent, Route::PassThrough(PassReason::NoRule));
        }
    }

    #[test]
    fn several_regions_can_be_canaries() {
        let config = config("eu, ap", false);
        check(&config, Some("EU"), pinned());
        check(&config, Some("OC"), pinned());
        check(&config, Some("NA"), Route::PassThrough(PassReason::OtherRegion(region("na"))));
    }

    #[test]
    fn the_region_header_counts_only_in_development() {
        let header_eu = Visit { continent: Some("NA"), dev_region: Some("eu"), overrides: None };
        assert_eq!(config("eu", true).route(&header_eu), pinned());
        assert_eq!(config("eu", false).route(&header_eu), Route::PassThrough(PassReason::OtherRegion(region("na"))));
        // Production: a client in Europe cannot opt out by naming another region either.
        let header_na = Visit { continent: Some("EU"), dev_region: Some("na"), overrides: None };
        assert_eq!(config("eu", false).route(&header_na), pinned());
        // Development without the header: request.cf as in production.
        assert_eq!(config("eu", true).route(&Visit { continent: Some("AF"), ..Visit::default() }), pinned());
    }

    #[test]
    fn other_workers_overrides_are_kept_and_a_testers_own_pin_wins() {
        let eu = config("eu", false);
        let other = Visit { continent: Some("EU"), dev_region: None, overrides: Some(r#"billing="abc""#) };
        assert_eq!(eu.route(&other), Route::Canary { overrides: format!(r#"billing="abc", edgestack="{GREEN}""#) });
        let tester = Visit { continent: Some("EU"), dev_region: None, overrides: Some(r#"edgestack="blue-id""#) };
        assert_eq!(eu.route(&tester), Route::PassThrough(PassReason::ClientOverride));
        // An entry for the app Worker that is no string is no pin: ours takes its place.
        let token =
            Visit { continent: Some("EU"), dev_region: None, overrides: Some("edgestack=blue, billing=\"abc\"") };
        assert_eq!(eu.route(&token), Route::Canary { overrides: format!(r#"edgestack="{GREEN}", billing="abc""#) });
        // A header that is no dictionary at all is replaced: Cloudflare would ignore it whole,
        // ours included (appended, the app Worker got `garbage;;, edgestack="…"`).
        for garbage in ["garbage;;", "billing=\"abc", "edgestack=\"x\" extra", "=\"x\"", "Billing=\"abc\""] {
            let visit = Visit { continent: Some("EU"), dev_region: None, overrides: Some(garbage) };
            assert_eq!(eu.route(&visit), pinned(), "{garbage}");
        }
        // Outside the canary region a tester's header passes untouched (no rewrite at all).
        let elsewhere = Visit { continent: Some("NA"), dev_region: None, overrides: Some(r#"billing="abc""#) };
        assert!(matches!(eu.route(&elsewhere), Route::PassThrough(PassReason::OtherRegion(_))));
    }

    #[test]
    fn the_version_key_is_the_cookie_else_the_clients_own_else_a_new_one() {
        let minted = || [0x5a; 16];
        let new_key = Affinity::Minted(StickyKey::from_random([0x5a; 16]));
        let cookie = |key: &str| Affinity::Cookie(StickyKey::parse(key).unwrap());
        let check = |cookies: Option<&str>, client_key: Option<&str>, expected: &Affinity| {
            assert_eq!(&affinity(cookies, client_key, minted), expected, "{cookies:?} {client_key:?}");
        };
        check(Some("theme=dark; edgestack_canary=user-0042"), None, &cookie("user-0042"));
        // The cookie wins over a key the client names itself: a browser's key is its cookie.
        check(Some("edgestack_canary=user-0042"), Some("other-key"), &cookie("user-0042"));
        check(None, Some("api-client-7"), &Affinity::ClientKey);
        for no_key in [None, Some(""), Some("edgestack_canary=short"), Some("edgestack_canary=bad key!")] {
            check(no_key, None, &new_key);
            check(no_key, Some("  "), &new_key);
        }
        let huge = format!("edgestack_canary={}", "k".repeat(10_000));
        check(Some(&huge), None, &new_key);
        assert_eq!(new_key.key().map(StickyKey::as_str), Some("5a".repeat(16).as_str()));
        assert_eq!(Affinity::ClientKey.key(), None);
    }

    #[test]
    fn the_release_writes_what_the_front_worker_reads() {
        let canary = Canary { version: GREEN.into(), regions: [region("eu"), region("ap")].into() };
        let vars = rule_vars("edgestack-entry", Some(&canary));
        assert_eq!(
            vars,
            [
                (APP_WORKER_VAR, "edgestack-entry".to_string()),
                (CANARY_VERSION_VAR, GREEN.to_string()),
                (CANARY_REGIONS_VAR, "ap,eu".to_string())
            ]
        );
        let lookup = |vars: Vec<(&'static str, String)>| {
            move |name: &str| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone())
        };
        let read = FrontConfig::from_lookup(lookup(vars)).unwrap();
        assert_eq!((read.app_worker.as_str(), read.canary), ("edgestack-entry", Some(canary)));
        let cleared = FrontConfig::from_lookup(lookup(rule_vars("edgestack", None))).unwrap();
        assert_eq!(cleared.canary, None);
    }

    #[test]
    fn half_a_rule_or_a_bad_value_is_refused() {
        let read = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            FrontConfig::from_lookup(move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        let app = (APP_WORKER_VAR, "edgestack");
        assert_eq!(read(&[]), Err(FrontConfigError::MissingAppWorker));
        for bad in ["Edge Stack", "1edgestack", "-edgestack"] {
            assert!(matches!(read(&[(APP_WORKER_VAR, bad)]), Err(FrontConfigError::BadAppWorker(_))), "{bad}");
        }
        assert_eq!(read(&[app, (CANARY_VERSION_VAR, GREEN)]), Err(FrontConfigError::Incomplete));
        assert_eq!(read(&[app, (CANARY_REGIONS_VAR, "eu")]), Err(FrontConfigError::Incomplete));
        assert!(matches!(
            read(&[app, (CANARY_VERSION_VAR, "a\"b"), (CANARY_REGIONS_VAR, "eu")]),
            Err(FrontConfigError::BadVersion(_))
        ));
        assert!(matches!(
            read(&[app, (CANARY_VERSION_VAR, GREEN), (CANARY_REGIONS_VAR, "EU")]),
            Err(FrontConfigError::BadRegion(_))
        ));
    }
}
