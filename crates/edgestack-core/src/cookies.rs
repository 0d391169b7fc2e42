//! Reading cookies as browsers, HTTP/2 and proxies deliver them. A browser sends one `Cookie`
//! header of `name=value` pairs joined by `; ` (RFC 6265 §5.4); HTTP/2 may split it into several
//! fields (RFC 9113 §8.2.3), and runtimes such as Workers join repeated fields with `, `. A cookie
//! value never contains `;`, `,` or whitespace (RFC 6265 §4.1.1 `cookie-octet`), so both are
//! separators here, whatever the delivery.

/// The values of every cookie named `name` in one `Cookie` field value, in order (empty values
/// included; callers parse and skip what is not theirs).
pub fn values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header
        .split([';', ','])
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, name: &str, expected: &[&str]) {
        assert_eq!(values(header, name).collect::<Vec<_>>(), expected, "{header:?}");
    }

    #[test]
    fn every_delivery_shape_finds_the_cookie() {
        check("a=1", "a", &["1"]);
        check("theme=dark; a=1; other=2", "a", &["1"]);
        // Two `Cookie` lines as the Workers runtime joins them, and as some proxies do.
        check("theme=dark, a=1", "a", &["1"]);
        check("theme=dark,a=1", "a", &["1"]);
        check("theme=dark;a=1", "a", &["1"]);
        check("  a = 1 ;", "a", &["1"]);
        check("a=\"1\"", "a", &["1"]);
        check("a=1; a=2", "a", &["1", "2"]);
        check("", "a", &[]);
        check("ab=1; a_b=2; b=3", "a", &[]);
        check("a", "a", &[]);
        check("a=", "a", &[""]);
    }
}
