//! Which version serves a request: the explicit override header first, then the user's sticky
//! bucket against the split for the request's region.
//!
//! A user's bucket is a stable hash of their key to 0..9999 basis points — the request's
//! `Cloudflare-Workers-Version-Key` when it has one (as Cloudflare assigns versions; the front
//! Worker sets it from the cookie), else the `edgestack_canary` cookie; users below the
//! threshold get the new version. Raising the threshold only adds
//! users to the new version, so a user who saw green never goes back to blue while a rollout
//! advances.

use serde::{Deserialize, Serialize};

use crate::plan::Split;

/// The cookie that carries a user's sticky key.
pub const CANARY_COOKIE: &str = "edgestack_canary";
/// Cloudflare's header for pinning a request to a version: `<worker-name>="<version-id>"`.
pub const VERSION_OVERRIDE_HEADER: &str = "cloudflare-workers-version-overrides";
/// Cloudflare's version affinity header: requests with the same value are served by the same
/// version of a gradual deployment, and a value on the new version stays there as its share
/// grows (docs: Workers, "Version affinity"). The front Worker sets it from the sticky key.
pub const VERSION_KEY_HEADER: &str = "cloudflare-workers-version-key";
/// The header the gateway adds to say which version answered.
pub const SERVED_BY_HEADER: &str = "x-edgestack-served-by";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// The version live before the rollout.
    Blue,
    /// The version being rolled out.
    Green,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blue => "blue",
            Self::Green => "green",
        }
    }

    pub fn other(self) -> Self {
        match self {
            Self::Blue => Self::Green,
            Self::Green => Self::Blue,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "blue" => Some(Self::Blue),
            "green" => Some(Self::Green),
            _ => None,
        }
    }
}

/// A validated sticky key: 8 to 64 characters of `[A-Za-z0-9_-]`, as the gateway mints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyKey(String);

impl StickyKey {
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let valid = (8..=64).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Self(value.to_string()))
    }

    /// A key from 16 random bytes (hex), for a user without one.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's place in 0..10000, from FNV-1a: stable across platforms, builds and restarts.
    pub fn bucket_bps(&self) -> u16 {
        bucket_bps(&self.0)
    }

    /// `Set-Cookie` value that keeps the key for 30 days.
    pub fn set_cookie(&self) -> String {
        format!("{CANARY_COOKIE}={}; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax", self.0)
    }
}

/// FNV-1a (64 bit) of `key`, reduced to 0..10000.
pub fn bucket_bps(key: &str) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Mixing the high bits in keeps similar keys (`user-1`, `user-2`) from clustering.
    let mixed = hash ^ (hash >> 29) ^ (hash >> 47);
    u16::try_from(mixed % 10_000).unwrap_or(0)
}

/// The first valid sticky key in a `Cookie` header, read as browsers send it
/// (`edgestack_core::cookies`: only `;` separates pairs).
pub fn sticky_key_from_cookies(cookie_header: &str) -> Option<StickyKey> {
    edgestack_core::cookies::values(cookie_header, CANARY_COOKIE).find_map(StickyKey::parse)
}

/// The value the override header asks for `worker_name`, if any. The header is a structured
/// field dictionary (RFC 8941) of Worker names to version strings, `name="value", other="value"`;
/// one that does not parse as a dictionary asks for nothing (Cloudflare ignores it whole).
pub fn requested_override(header: &str, worker_name: &str) -> Option<String> {
    pinned_in(&override_dictionary(header)?, worker_name)
}

/// The override header as the dictionary it must be; `None` for one that is not (RFC 8941).
pub fn override_dictionary(header: &str) -> Option<sfv::Dictionary> {
    sfv::Parser::new(header.trim()).parse().ok()
}

/// The non-empty string `overrides` names for `worker_name`, if any.
pub fn pinned_in(overrides: &sfv::Dictionary, worker_name: &str) -> Option<String> {
    let sfv::ListEntry::Item(item) = overrides.get(sfv::KeyRef::from_str(worker_name).ok()?)? else {
        return None;
    };
    let value = item.bare_item.as_string()?.as_str();
    (!value.is_empty()).then(|| value.to_string())
}

/// Resolves an override value to a version: its name (`blue`, `green`) or its version id.
pub fn resolve_override(value: &str, blue_id: Option<&str>, green_id: Option<&str>) -> Option<Version> {
    if let Some(version) = Version::parse(value) {
        return Some(version);
    }
    // An id both versions share (one build behind two names) pins nothing.
    match (blue_id == Some(value), green_id == Some(value)) {
        (true, false) => Some(Version::Blue),
        (false, true) => Some(Version::Green),
        _ => None,
    }
}

/// How a request was routed, for the response header and the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Override,
    Split,
}

/// The version for a request: an override wins; otherwise green when the user's bucket is below
/// the region's share.
pub fn choose(split: &Split, region: &str, bucket: u16, overridden: Option<Version>) -> (Version, Reason) {
    match overridden {
        Some(version) => (version, Reason::Override),
        None if bucket < split.bps_for(region) => (Version::Green, Reason::Split),
        None => (Version::Blue, Reason::Split),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn split(default_bps: u16, regions: &[(&str, u16)]) -> Split {
        Split { default_bps, regions: regions.iter().map(|(r, b)| (r.to_string(), *b)).collect::<BTreeMap<_, _>>() }
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket_bps("user-0001"), bucket_bps("user-0001"));
        let buckets: Vec<u16> = (0..2000).map(|i| bucket_bps(&format!("user-{i:04}"))).collect();
        assert!(buckets.iter().all(|b| *b < 10_000));
        // Roughly uniform: each tenth of the range holds 10 % ± 3 % of 2000 keys.
        for tenth in 0..10u16 {
            let count = buckets.iter().filter(|b| **b / 1000 == tenth).count();
            assert!((140..=260).contains(&count), "tenth {tenth}: {count}");
        }
    }

    #[test]
    fn raising_the_share_never_moves_a_green_user_back() {
        let stages = [100, 1000, 5000, 10_000];
        for i in 0..500 {
            let bucket = bucket_bps(&format!("key-{i}"));
            let versions: Vec<Version> =
                stages.iter().map(|bps| choose(&split(*bps, &[]), "na", bucket, None).0).collect();
            let first_green = versions.iter().position(|v| *v == Version::Green).unwrap_or(versions.len());
            assert!(versions[first_green..].iter().all(|v| *v == Version::Green), "{i}: {versions:?}");
        }
    }

    #[test]
    fn regional_share_applies_only_in_that_region() {
        let eu_first = split(0, &[("eu", 10_000)]);
        assert_eq!(choose(&eu_first, "eu", 9_999, None), (Version::Green, Reason::Split));
        assert_eq!(choose(&eu_first, "na", 0, None), (Version::Blue, Reason::Split));
    }

    #[test]
    fn override_wins_over_the_split() {
        assert_eq!(choose(&split(10_000, &[]), "na", 0, Some(Version::Blue)), (Version::Blue, Reason::Override));
        assert_eq!(choose(&split(0, &[]), "na", 0, Some(Version::Green)), (Version::Green, Reason::Override));
    }

    #[test]
    fn override_header_is_parsed_like_cloudflare() {
        let check = |header: &str, expected: Option<&str>| {
            assert_eq!(requested_override(header, "edgestack").as_deref(), expected, "{header}");
        };
        check(r#"edgestack="green""#, Some("green"));
        check(
            r#"other="x", edgestack="dc8dcd28-271b-4367-9840-6c244f84cb40""#,
            Some("dc8dcd28-271b-4367-9840-6c244f84cb40"),
        );
        check(r#"edgestack=green"#, None);
        check(r#"edgestack="""#, None);
        check(r#"other="green""#, None);
        check("", None);
        // RFC 8941: the last of a repeated key counts; a header that is no dictionary counts not at all.
        check(r#"edgestack="blue", edgestack="green""#, Some("green"));
        check(r#" edgestack="green" "#, Some("green"));
        check(r#"garbage;;, edgestack="green""#, None);
        check(r#"edgestack="green" extra"#, None);
        check(r#"edgestack=("green")"#, None);
    }

    #[test]
    fn override_values_resolve_by_name_or_id() {
        assert_eq!(resolve_override("green", None, None), Some(Version::Green));
        assert_eq!(resolve_override("BLUE", None, None), Some(Version::Blue));
        assert_eq!(resolve_override("id-2", Some("id-1"), Some("id-2")), Some(Version::Green));
        assert_eq!(resolve_override("id-1", Some("id-1"), Some("id-1")), None);
        assert_eq!(resolve_override("nope", Some("id-1"), Some("id-2")), None);
    }

    #[test]
    fn sticky_key_comes_from_the_cookie_header() {
        let key = sticky_key_from_cookies("session=abc; edgestack_canary=user-0042; x=y").unwrap();
        assert_eq!(key.as_str(), "user-0042");
        assert!(sticky_key_from_cookies("edgestack_canary=short").is_none());
        assert!(sticky_key_from_cookies("edgestack_canary=bad key!").is_none());
        assert!(sticky_key_from_cookies("other=user-0042").is_none());
        // A key inside another cookie's value (after a comma) is that value's text.
        assert!(sticky_key_from_cookies("theme=dark,edgestack_canary=user-0042").is_none());
        let quoted = sticky_key_from_cookies("edgestack_canary=\"user-0042\"").unwrap();
        assert_eq!(quoted.as_str(), "user-0042");
        let minted = StickyKey::from_random([0xab; 16]);
        assert_eq!(minted.as_str().len(), 32);
        assert!(minted.set_cookie().starts_with("edgestack_canary=abab"));
    }
}
