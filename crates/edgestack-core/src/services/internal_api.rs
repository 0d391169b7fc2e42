//! The versioned internal API between services: every internal request names the version it
//! speaks in a header, and a service answers every version in its supported range, so services
//! can be deployed in any order (a contract test pins each service's client against the other's
//! previous release).

pub const VERSION_HEADER: &str = "x-edgestack-internal-api";

/// The versions this build can serve; widen before a client starts sending a new one, narrow
/// only after no deployed client sends the old one.
pub const SUPPORTED: std::ops::RangeInclusive<u16> = 1..=1;
/// The version this build's clients send.
pub const CURRENT: u16 = 1;

/// Why an internal request's version is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionError {
    Missing,
    NotANumber,
    Unsupported(u16),
}

impl std::fmt::Display for VersionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => write!(f, "missing {VERSION_HEADER}"),
            Self::NotANumber => write!(f, "{VERSION_HEADER} is not a number"),
            Self::Unsupported(version) => {
                write!(f, "internal API version {version} is not in {}..={}", SUPPORTED.start(), SUPPORTED.end())
            }
        }
    }
}

/// `Ok(version)` when the header names a version this build serves.
pub fn negotiate(header: Option<&str>) -> Result<u16, VersionError> {
    let version: u16 = header.ok_or(VersionError::Missing)?.trim().parse().map_err(|_| VersionError::NotANumber)?;
    if SUPPORTED.contains(&version) { Ok(version) } else { Err(VersionError::Unsupported(version)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("1")), Ok(1));
        assert!(SUPPORTED.contains(&CURRENT), "a build must serve what it sends");
        for bad in [None, Some(""), Some("v1"), Some("2"), Some("0")] {
            assert!(negotiate(bad).is_err(), "{bad:?}");
        }
    }
}
