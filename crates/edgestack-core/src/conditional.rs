//! Conditional requests (RFC 9110 §13). `If-None-Match` against a response's entity tag, for
//! revalidating cached reads: the comparison is weak (§13.1.2: `W/"x"` matches `"x"`), because a
//! CDN may weaken a strong tag when it compresses a response. `If-Match` before a write, so two
//! clients editing one note cannot overwrite each other unseen: the comparison is strong
//! (§13.1.1), so a weak tag never matches. Both take a list of tags or `*`.

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

/// What an `If-Match` field asks for (RFC 9110 §13.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current representation — the target must exist.
    Any,
    /// The opaque parts of the listed strong tags (weak ones dropped: under strong comparison they
    /// match nothing). Empty when every listed tag was weak: then nothing matches.
    Strong(Vec<String>),
}

/// An `If-Match` value that is neither `*` nor a list of entity tags (RFC 9110 §8.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidIfMatch;

impl IfMatch {
    /// Parses the field's value (repeated fields joined with `, `).
    ///
    /// # Errors
    /// [`InvalidIfMatch`] for anything but `*` or one or more entity tags separated by commas:
    /// a client that sent a precondition meant one, so guessing would risk the very overwrite it
    /// guards against.
    pub fn parse(value: &str) -> Result<Self, InvalidIfMatch> {
        let value = value.trim();
        if value == "*" {
            return Ok(Self::Any);
        }
        let mut strong = Vec::new();
        let mut rest = value;
        let mut tags = 0;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if rest.is_empty() {
                break;
            }
            let (weak, tag) = match rest.strip_prefix("W/") {
                Some(tag) => (true, tag),
                None => (false, rest),
            };
            let quoted = tag.strip_prefix('"').ok_or(InvalidIfMatch)?;
            let end = quoted.find('"').ok_or(InvalidIfMatch)?;
            let opaque = &quoted[..end];
            // etagc (§8.8.3): visible ASCII but the quote, and obs-text.
            if !opaque.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80) {
                return Err(InvalidIfMatch);
            }
            if !weak {
                strong.push(opaque.to_string());
            }
            tags += 1;
            rest = &quoted[end + 1..];
            if !(rest.is_empty() || rest.starts_with([',', ' ', '\t'])) {
                return Err(InvalidIfMatch);
            }
        }
        if tags == 0 {
            return Err(InvalidIfMatch);
        }
        Ok(Self::Strong(strong))
    }

    /// Whether a representation tagged `etag` (a strong tag, quotes included) satisfies it.
    pub fn admits(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Strong(tags) => opaque_tag(etag).is_some_and(|ours| tags.iter().any(|tag| tag == ours)),
        }
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
    fn if_match_compares_strongly_and_refuses_what_is_not_a_tag_list() {
        let admits = |header: &str| IfMatch::parse(header).map(|condition| condition.admits("\"abc\""));
        assert_eq!(admits("\"abc\""), Ok(true));
        assert_eq!(admits(" * "), Ok(true));
        assert_eq!(admits("\"x\", \"abc\""), Ok(true));
        assert_eq!(admits("\"x\",\"abc\","), Ok(true));
        assert_eq!(admits("\"a,bc\", \"abc\""), Ok(true));
        assert_eq!(admits("W/\"abc\""), Ok(false), "strong comparison: a weak tag never matches");
        assert_eq!(admits("\"abcd\""), Ok(false));
        assert_eq!(admits("\"\""), Ok(false));
        for malformed in ["", ",", "abc", "\"abc", "\"x\", *", "W/ \"abc\"", "\"a\"\"b\"", "\"a b\"", "\"a\"x"] {
            assert_eq!(IfMatch::parse(malformed), Err(InvalidIfMatch), "If-Match: {malformed}");
        }
    }

    #[test]
    fn a_weak_etag_of_ours_matches_too() {
        assert!(none_match("\"abc\"", "W/\"abc\""));
    }
}
