//! Conditional requests on our own responses (RFC 9110 §13): `If-None-Match` against the
//! response's entity tag. The comparison is weak (§13.1.2: `W/"x"` matches `"x"`), because a CDN
//! may weaken a strong tag when it compresses a response; a list of tags and `*` are allowed.

/// `true` when `if_none_match` (the header's value) names `etag` or is `*`: the client already
/// has this representation, so the answer is 304. A malformed header matches nothing.
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    let ours = opaque_tag(etag.trim());
    let header = if_none_match.trim();
    if header == "*" {
        return true;
    }
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return false;
        }
        let tag_start = rest.strip_prefix("W/").unwrap_or(rest);
        // An entity tag is a quoted string without escapes; it may itself contain commas.
        let Some(quoted) = tag_start.strip_prefix('"') else { return false };
        let Some(end) = quoted.find('"') else { return false };
        if Some(&quoted[..end]) == ours {
            return true;
        }
        rest = &quoted[end + 1..];
    }
}

/// The opaque part of `"x"` or `W/"x"`.
fn opaque_tag(tag: &str) -> Option<&str> {
    tag.strip_prefix("W/").unwrap_or(tag).strip_prefix('"')?.strip_suffix('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, expected: bool) {
        assert_eq!(none_match(header, "\"abc\""), expected, "If-None-Match: {header}");
    }

    #[test]
    fn weak_comparison_lists_and_star() {
        check("\"abc\"", true);
        check("W/\"abc\"", true);
        check("w/\"abc\"", false);
        check(" \"abc\" ", true);
        check("*", true);
        check(" * ", true);
        check("\"x\", \"abc\"", true);
        check("\"x\",W/\"abc\"", true);
        check("\"x\" , W/\"abc\" ,", true);
        check("\"a,bc\", \"abc\"", true);
        check("\"a,bc\"", false);
        check("\"abcd\"", false);
        check("\"ab\"", false);
        check("abc", false);
        check("\"abc", false);
        check("", false);
        check(",", false);
        check("\"x\", *", false);
        check("W/ \"abc\"", false);
    }

    #[test]
    fn a_weak_etag_of_ours_matches_too() {
        assert!(none_match("\"abc\"", "W/\"abc\""));
    }
}
