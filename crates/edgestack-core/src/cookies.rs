//! Reading cookies as browsers send them: one `Cookie` header of `name=value` pairs joined by
//! `; ` (RFC 6265 §5.4, which lets a user agent send no second `Cookie` field; the HTTP/2 hop
//! joins a field split into crumbs with `; ` again, RFC 9113 §8.2.3).
//!
//! Only `;` separates pairs. A comma does not: browsers keep everything up to the next `;` as
//! the value (RFC 6265 §5.2), commas and spaces included, so a cookie any sibling host may plant
//! (`planted=1,__Host-edgestack_session=…`, sent before the real one) would otherwise name a
//! session the `__Host-` prefix exists to protect. Two `Cookie` fields that a non-browser client
//! sends, joined by the runtime with `, `, therefore read as one pair ending at the comma: a
//! cookie in the second field is not seen (the request is treated as not carrying it).
//!
//! Names and values are trimmed of spaces and tabs only, as a browser trims them (RFC 6265
//! §5.2's WSP), never of Unicode white space: the Workers runtime hands a cookie name on decoded
//! from UTF-8, and a browser stores `\u{2000}__Host-edgestack_session`, which a sibling host may
//! set for the parent domain, as a name without the `__Host-` prefix; trimmed of U+2000 it would
//! name the session cookie the prefix exists to protect (a planted session: cookie tossing).

/// The values of every cookie named `name` in one `Cookie` field value, in order (empty values
/// included; callers parse and skip what is not theirs).
pub fn values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .filter(move |(key, _)| key.trim_matches(WSP) == name)
        .map(|(_, value)| value.trim_matches(WSP).trim_matches('"'))
}

/// What a browser trims around a cookie's name and value (RFC 6265 §5.2, RFC 5234's WSP).
const WSP: [char; 2] = [' ', '\t'];

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
        check("theme=dark;a=1", "a", &["1"]);
        check("  a = 1 ;", "a", &["1"]);
        check("a=\"1\"", "a", &["1"]);
        check("a=1; a=2", "a", &["1", "2"]);
        check("", "a", &[]);
        check("ab=1; a_b=2; b=3", "a", &[]);
        check("a", "a", &[]);
        check("a=", "a", &[""]);
    }

    /// A value runs to the next `;` as a browser stores it (RFC 6265 §5.2): a pair inside
    /// another cookie's value, after a comma, is that value's text and names no cookie.
    #[test]
    fn a_comma_inside_a_value_starts_no_cookie() {
        check("planted=1,a=evil; a=mine", "a", &["mine"]);
        check("planted=\"1,a=evil\"; a=mine", "a", &["mine"]);
        check("planted=1, a=evil; a=mine", "a", &["mine"]);
        check("theme=dark, a=1", "a", &[]);
        check("a=1,2", "a", &["1,2"]);
    }

    /// Only spaces and tabs are trimmed: a name behind any other white space (U+2000, a
    /// no-break space, NEL, a line tabulation) is another cookie's, one a sibling host may plant.
    #[test]
    fn a_name_behind_other_white_space_is_another_cookie() {
        check("\ta =1", "a", &["1"]);
        for space in ['\u{2000}', '\u{a0}', '\u{85}', '\u{3000}', '\u{b}', '\u{c}', '\n'] {
            check(&format!("{space}a=planted; a=mine"), "a", &["mine"]);
            check(&format!("a{space}=planted; a=mine"), "a", &["mine"]);
        }
        check("a=\u{a0}1", "a", &["\u{a0}1"]);
    }
}
