//! Cross-site request forgery: a request that changes state must prove it is same-origin.
//!
//! Browsers send `Origin` (and `Sec-Fetch-Site`) on such requests and a page on another site
//! cannot forge them; non-browser clients send neither and must add `X-Edgestack-Client`, a
//! custom header no cross-site form can carry and no cross-site script may send without a
//! CORS preflight, which this API never grants.

use std::fmt;

use crate::routes::Method;

pub const CLIENT_HEADER: &str = "x-edgestack-client";

pub struct CsrfEvidence<'a> {
    /// `scheme://host[:port]` of the request URL.
    pub request_origin: &'a str,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub client_header: Option<&'a str>,
}

/// Why a state-changing request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfRefusal {
    OriginMismatch,
    SecFetchSiteNotSameOrigin,
    NoProof,
}

impl fmt::Display for CsrfRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            Self::OriginMismatch => "Origin does not match",
            Self::SecFetchSiteNotSameOrigin => "Sec-Fetch-Site is not same-origin",
            Self::NoProof => "send Origin or X-Edgestack-Client",
        };
        write!(f, "cross-site request refused: {why}")
    }
}

/// Whether a request of `method` must prove it comes from this site: safe methods (RFC 9110
/// §9.2.1) change nothing, so a cross-site one does no harm. Callers ask before gathering the
/// evidence, which costs a header read each on Workers.
pub fn needs_proof(method: Method) -> bool {
    !matches!(method, Method::Get | Method::Head | Method::Options)
}

pub fn check(method: Method, evidence: &CsrfEvidence<'_>) -> Result<(), CsrfRefusal> {
    if !needs_proof(method) {
        return Ok(());
    }
    if let Some(origin) = evidence.origin {
        return if origin.eq_ignore_ascii_case(evidence.request_origin) {
            Ok(())
        } else {
            Err(CsrfRefusal::OriginMismatch)
        };
    }
    if let Some(site) = evidence.sec_fetch_site {
        return if site == "same-origin" { Ok(()) } else { Err(CsrfRefusal::SecFetchSiteNotSameOrigin) };
    }
    if evidence.client_header.is_some_and(|value| !value.trim().is_empty()) {
        return Ok(());
    }
    Err(CsrfRefusal::NoProof)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_case(method: Method, origin: Option<&str>, site: Option<&str>, client: Option<&str>) -> Result<(), u16> {
        let evidence =
            CsrfEvidence { request_origin: "https://app.example", origin, sec_fetch_site: site, client_header: client };
        check(method, &evidence).map_err(|e| crate::error::ApiError::from(e).status())
    }

    #[test]
    fn safe_methods_pass() {
        assert_eq!(check_case(Method::Get, Some("https://evil.example"), Some("cross-site"), None), Ok(()));
    }

    #[test]
    fn same_origin_passes_and_cross_origin_fails() {
        assert_eq!(check_case(Method::Post, Some("https://app.example"), Some("same-origin"), None), Ok(()));
        assert_eq!(check_case(Method::Post, Some("https://evil.example"), None, Some("1")), Err(403));
        assert_eq!(check_case(Method::Delete, Some("null"), None, None), Err(403));
        assert_eq!(check_case(Method::Post, None, Some("same-origin"), None), Ok(()));
        assert_eq!(check_case(Method::Post, None, Some("cross-site"), Some("1")), Err(403));
        assert_eq!(check_case(Method::Patch, None, Some("same-site"), None), Err(403));
    }

    #[test]
    fn non_browser_clients_need_the_custom_header() {
        assert_eq!(check_case(Method::Post, None, None, Some("1")), Ok(()));
        assert_eq!(check_case(Method::Put, None, None, None), Err(403));
        assert_eq!(check_case(Method::Put, None, None, Some(" ")), Err(403));
    }
}
