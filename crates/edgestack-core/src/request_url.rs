//! The parts of a request URL the API needs, split from the runtime's already-normalized
//! `request.url` (WHATWG URL serialization: lower-case scheme and host, default port dropped,
//! path percent-encoded). Splitting the string avoids re-parsing it with a full URL parser —
//! in wasm the `url` crate (with its IDNA tables) costs CPU on every request and tens of KB
//! of module size (docs/performance.md).

/// `scheme://host[:port]`, the path, and the query without `?` (empty when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestUrl<'a> {
    pub origin: &'a str,
    pub path: &'a str,
    pub query: &'a str,
}

impl<'a> RequestUrl<'a> {
    /// `None` for anything that is not an absolute `scheme://authority…` URL.
    pub fn split(url: &'a str) -> Option<Self> {
        let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
        let scheme_end = without_fragment.find("://")?;
        let authority_start = scheme_end + 3;
        let rest = &without_fragment[authority_start..];
        let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
        if scheme_end == 0 || authority_len == 0 {
            return None;
        }
        let origin = &without_fragment[..authority_start + authority_len];
        let target = &rest[authority_len..];
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Some(Self { origin, path: if path.is_empty() { "/" } else { path }, query })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: Option<(&str, &str, &str)>) {
        let split = RequestUrl::split(url).map(|u| (u.origin, u.path, u.query));
        assert_eq!(split, expected, "{url}");
    }

    #[test]
    fn splits_what_the_runtime_serializes() {
        check("https://edge.example/api/health", Some(("https://edge.example", "/api/health", "")));
        check(
            "http://127.0.0.1:8787/api/notes?limit=5&after=x",
            Some(("http://127.0.0.1:8787", "/api/notes", "limit=5&after=x")),
        );
        check("https://e.example/api/public/notes?", Some(("https://e.example", "/api/public/notes", "")));
        check("https://e.example/a%20b/c?q=%3F#frag", Some(("https://e.example", "/a%20b/c", "q=%3F")));
        check("https://e.example?x=1", Some(("https://e.example", "/", "x=1")));
        check("https://e.example", Some(("https://e.example", "/", "")));
        check("https://e.example/a?b?c", Some(("https://e.example", "/a", "b?c")));
        check("/api/health", None);
        check("https:///api", None);
        check("://host/api", None);
        check("", None);
    }
}
