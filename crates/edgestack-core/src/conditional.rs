//! Conditional requests (RFC 9110 §13) on our own entity tags. `If-None-Match` revalidates a
//! read (304) and refuses a change to a version the client names (412): the comparison is weak
//! (§13.1.2: `W/"x"` matches `"x"`), because a CDN may weaken a strong tag when it compresses a
//! response. `If-Match` before a change, so two clients editing one note cannot overwrite each
//! other unseen: the comparison is strong (§13.1.1), so a weak tag never matches. Both take a
//! list of tags or `*`.

/// One entity tag of a field's list (§8.8.3): whether it is weak, and its opaque part.
struct ListedTag<'a> {
    weak: bool,
    opaque: &'a str,
}

/// A field that is not `*` and not a list of entity tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NotATagList;

/// `*` (`None`) or the listed tags of an `If-Match` / `If-None-Match` value (repeated fields
/// joined with `, `): `#entity-tag` with optional white space (SP and HTAB, §5.6.3) and empty
/// list elements (§5.6.1); a tag may itself hold commas.
fn listed_tags(value: &str) -> Result<Option<Vec<ListedTag<'_>>>, NotATagList> {
    let ows = |c: char| c == ' ' || c == '\t';
    let value = value.trim_matches(ows);
    if value == "*" {
        return Ok(None);
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || ows(c));
        if rest.is_empty() {
            break;
        }
        let (weak, tag) = match rest.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, rest),
        };
        let quoted = tag.strip_prefix('"').ok_or(NotATagList)?;
        let end = quoted.find('"').ok_or(NotATagList)?;
        let opaque = &quoted[..end];
        // etagc: visible ASCII but the quote, and obs-text.
        if !opaque.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80) {
            return Err(NotATagList);
        }
        tags.push(ListedTag { weak, opaque });
        rest = quoted[end + 1..].trim_start_matches(ows);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return Err(NotATagList);
        }
    }
    if tags.is_empty() {
        return Err(NotATagList);
    }
    Ok(Some(tags))
}

/// `true` when `if_none_match` (the header's value) names `etag` or is `*`: the client already
/// has this representation, so a read answers 304. A malformed header matches nothing.
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    IfNoneMatch::parse(if_none_match).is_some_and(|condition| condition.names(etag))
}

/// What an `If-None-Match` field names (RFC 9110 §13.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfNoneMatch {
    /// `*`: any current representation.
    Any,
    /// The opaque parts of the listed tags, weak or strong (the comparison is weak).
    Tags(Vec<String>),
}

impl IfNoneMatch {
    /// Parses the field's value; `None` when it is malformed, which then names nothing (a
    /// cache's revalidation must not fail on a header it cannot read).
    pub fn parse(value: &str) -> Option<Self> {
        match listed_tags(value).ok()? {
            None => Some(Self::Any),
            Some(tags) => Some(Self::Tags(tags.iter().map(|tag| tag.opaque.to_string()).collect())),
        }
    }

    /// Whether it names the representation tagged `etag` (quotes included; weak comparison).
    pub fn names(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => opaque_tag(etag.trim()).is_some_and(|ours| tags.iter().any(|tag| tag == ours)),
        }
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
        match listed_tags(value).map_err(|_| InvalidIfMatch)? {
            None => Ok(Self::Any),
            Some(tags) => {
                Ok(Self::Strong(tags.iter().filter(|tag| !tag.weak).map(|tag| tag.opaque.to_string()).collect()))
            }
        }
    }

    /// Whether a representation tagged `etag` (a strong tag, quotes included) satisfies it.
    pub fn admits(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Strong(tags) => opaque_tag(etag).is_some_and(|ours| tags.iter().any(|tag| tag == ours)),
        }
    }
}

/// The preconditions of a request on one resource, evaluated in RFC 9110 §13.2.2's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub if_match: Option<IfMatch>,
    pub if_none_match: Option<IfNoneMatch>,
}

/// How [`Preconditions`] answer for the current representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Perform the method.
    Proceed,
    /// `If-None-Match` named the version a read would send: 304.
    NotModified,
    /// 412.
    Failed,
}

impl Preconditions {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// The verdict for the current representation tagged `etag`, for a read (`safe`: GET or
    /// HEAD, where a named version is a 304) or a change (where it is a 412).
    pub fn verdict(&self, etag: &str, safe: bool) -> Verdict {
        if self.if_match.as_ref().is_some_and(|condition| !condition.admits(etag)) {
            return Verdict::Failed;
        }
        match &self.if_none_match {
            Some(condition) if condition.names(etag) => {
                if safe {
                    Verdict::NotModified
                } else {
                    Verdict::Failed
                }
            }
            _ => Verdict::Proceed,
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
        assert_eq!(admits("\t\"x\" ,\t\"abc\"\t"), Ok(true));
        for malformed in [
            "",
            ",",
            "\"x\" \"abc\"",
            "\"abc\"\u{a0}",
            "abc",
            "\"abc",
            "\"x\", *",
            "W/ \"abc\"",
            "\"a\"\"b\"",
            "\"a b\"",
            "\"a\"x",
        ] {
            assert_eq!(IfMatch::parse(malformed), Err(InvalidIfMatch), "If-Match: {malformed}");
        }
    }

    #[test]
    fn if_match_goes_first_and_a_named_version_is_304_for_a_read_and_412_for_a_change() {
        let of = |if_match: Option<&str>, if_none_match: Option<&str>| Preconditions {
            if_match: if_match.map(|value| IfMatch::parse(value).unwrap()),
            if_none_match: if_none_match.and_then(IfNoneMatch::parse),
        };
        let ours = "\"abc\"";
        for (preconditions, read, change) in [
            (of(None, None), Verdict::Proceed, Verdict::Proceed),
            (of(Some(ours), None), Verdict::Proceed, Verdict::Proceed),
            (of(Some("\"x\""), None), Verdict::Failed, Verdict::Failed),
            (of(None, Some("W/\"abc\"")), Verdict::NotModified, Verdict::Failed),
            (of(None, Some("*")), Verdict::NotModified, Verdict::Failed),
            (of(None, Some("\"x\"")), Verdict::Proceed, Verdict::Proceed),
            (of(None, Some("not a tag")), Verdict::Proceed, Verdict::Proceed),
            (of(Some("\"x\""), Some(ours)), Verdict::Failed, Verdict::Failed),
            (of(Some("*"), Some(ours)), Verdict::NotModified, Verdict::Failed),
        ] {
            assert_eq!(preconditions.verdict(ours, true), read, "read under {preconditions:?}");
            assert_eq!(preconditions.verdict(ours, false), change, "change under {preconditions:?}");
        }
    }

    #[test]
    fn a_weak_etag_of_ours_matches_too() {
        assert!(none_match("\"abc\"", "W/\"abc\""));
    }
}
