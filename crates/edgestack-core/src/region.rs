//! Which region a request is served in: from Cloudflare's `request.cf`, or a dev-only override.
//!
//! Regions are the keys replica URLs are configured under (e.g. `na`, `eu`, `ap`), so they are
//! coarse on purpose: a continent picks the region, the colo is reported for humans.

use serde::{Deserialize, Deserializer, Serialize};

/// Header that sets the region under `wrangler dev`, where `request.cf` is a placeholder.
/// Honoured only when the configuration says development.
pub const DEV_REGION_HEADER: &str = "x-edgestack-region";

/// A validated region name: lowercase ASCII letters, digits and `-`, 1 to 16 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RegionName(String);

/// As the entry reads a service's health report: validated like any other region name.
impl<'de> Deserialize<'de> for RegionName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).ok_or_else(|| serde::de::Error::custom(format!("not a region name: {value:?}")))
    }
}

impl RegionName {
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim().to_ascii_lowercase();
        let valid = (1..=16).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        valid.then_some(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Cloudflare continent codes folded into the [`CONTINENT_REGIONS`]; unknown codes go to
    /// `na`, the region that hosts the primary in the default setup.
    pub fn from_continent(continent: &str) -> Self {
        let region = match continent.trim().to_ascii_uppercase().as_str() {
            "EU" | "AF" => "eu",
            "AS" | "OC" => "ap",
            _ => "na",
        };
        Self(region.to_string())
    }
}

/// Every region [`RegionName::from_continent`] gives: the only regions a deployed request is
/// assigned to (a region any other name stands for is reached only through the development
/// override).
pub const CONTINENT_REGIONS: [&str; 3] = ["na", "eu", "ap"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    Cloudflare,
    DevOverride,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRegion {
    pub name: RegionName,
    /// The Cloudflare data centre (e.g. `LHR`), when known.
    pub colo: Option<String>,
    pub source: RegionSource,
}

/// What the runtime tells about where a request arrived (Cloudflare's `request.cf`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Location {
    pub continent: Option<String>,
    pub colo: Option<String>,
}

impl RegionName {
    /// The region a request names itself (`header`, else the configured development default),
    /// if valid and `allowed` — only in development, or on a service reached through the entry;
    /// in production it is ignored, so a client can never pick its own replica or canary region.
    pub fn from_override(header: Option<&str>, allowed: bool) -> Option<Self> {
        header.filter(|_| allowed).and_then(Self::parse)
    }

    /// The region of `location` (its continent; unknown goes to `na`, see [`Self::from_continent`]).
    pub fn of(location: &Location) -> Self {
        Self::from_continent(location.continent.as_deref().unwrap_or(""))
    }
}

impl RequestRegion {
    /// The honoured override if there is one, else `location`'s region; the colo is always the
    /// location's.
    pub fn new(honoured_override: Option<RegionName>, location: &Location) -> Self {
        let colo = location.colo.clone().filter(|c| !c.is_empty());
        match honoured_override {
            Some(name) => Self { name, colo, source: RegionSource::DevOverride },
            None => Self { name: RegionName::of(location), colo, source: RegionSource::Cloudflare },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(continent: Option<&str>, header: Option<&str>, allowed: bool) -> RequestRegion {
        let location = Location { continent: continent.map(String::from), colo: Some("LHR".into()) };
        RequestRegion::new(RegionName::from_override(header, allowed), &location)
    }

    #[test]
    fn continent_maps_to_region() {
        for (continent, region) in [
            ("EU", "eu"),
            ("AF", "eu"),
            ("AS", "ap"),
            ("OC", "ap"),
            ("NA", "na"),
            ("SA", "na"),
            ("", "na"),
            ("??", "na"),
        ] {
            assert_eq!(RegionName::from_continent(continent).as_str(), region, "{continent}");
            assert!(CONTINENT_REGIONS.contains(&region));
        }
    }

    #[test]
    fn override_only_in_development() {
        let dev = detect(Some("NA"), Some("ap"), true);
        assert_eq!((dev.name.as_str(), dev.source), ("ap", RegionSource::DevOverride));
        let prod = detect(Some("NA"), Some("ap"), false);
        assert_eq!((prod.name.as_str(), prod.source), ("na", RegionSource::Cloudflare));
        assert_eq!(prod.colo.as_deref(), Some("LHR"));
    }

    #[test]
    fn invalid_override_falls_back_to_cf() {
        for bad in ["", "EU!", "a-very-long-region-name", "eu west"] {
            let region = detect(Some("EU"), Some(bad), true);
            assert_eq!((region.name.as_str(), region.source), ("eu", RegionSource::Cloudflare), "{bad:?}");
        }
    }

    #[test]
    fn region_names_are_normalized() {
        assert_eq!(RegionName::parse(" EU ").map(|r| r.0), Some("eu".to_string()));
        assert_eq!(RegionName::parse("us-east-1").map(|r| r.0), Some("us-east-1".to_string()));
    }
}
