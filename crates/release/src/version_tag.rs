//! The version tag on static responses: `release deploy` uploads a build with `--tag <rev>` and
//! hands the same value to the build (`EDGESTACK_VERSION_TAG`), whose asset step appends a rule
//! to `_headers` so Workers Static Assets sends `x-edgestack-version-tag: <rev>` on every file —
//! the header the app Worker sends on API responses from its version metadata.
//!
//! Only the tag can travel this way: the version id is assigned when the upload (which includes
//! `_headers`) is made, so a build cannot know its own id. A build without the variable (local
//! development, a plain `wrangler deploy`) adds no rule: its version metadata has no tag either.

/// The variable `release deploy` sets for `wrangler versions upload` (and so for its
/// `[build] command`, `cargo xtask build`).
pub const TAG_ENV: &str = "EDGESTACK_VERSION_TAG";
/// The git revision of the version being replaced, which `release deploy` hands the build of a
/// tagged upload (read from the deployed version's tag): the asset step keeps that revision's
/// fingerprinted files beside the new ones, so a page the old version served just before the
/// promotion still finds its scripts (docs/releases.md, "Static asset skew").
pub const PREVIOUS_REVISION_ENV: &str = "EDGESTACK_PREVIOUS_ASSETS_REVISION";
/// The header the app Worker puts on API responses (`src/http.rs`), and `_headers` on the rest.
pub const VERSION_TAG_HEADER: &str = "x-edgestack-version-tag";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTag(pub String);

impl std::fmt::Display for BadTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "version tag `{}`: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit",
            self.0
        )
    }
}

impl std::error::Error for BadTag {}

/// A tag that can stand in a header line and a shell word unquoted (a git revision, `v1.4.0`),
/// and that a command line cannot take for an option (`wrangler versions upload --tag <tag>`):
/// 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn check_tag(tag: &str) -> Result<(), BadTag> {
    let valid = (1..=64).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid { Ok(()) } else { Err(BadTag(tag.to_string())) }
}

/// The `_headers` rule that names the tag on every static response. A rule of its own, so it
/// adds one header whatever the other rules say (matching rules' headers are joined).
pub fn headers_rule(tag: &str) -> Result<String, BadTag> {
    check_tag(tag)?;
    Ok(format!("# The version tag this build was uploaded with ({TAG_ENV}).\n/*\n  {VERSION_TAG_HEADER}: {tag}\n"))
}

/// `file` with the tag's rule appended when `tag` is set; unchanged otherwise.
pub fn with_tag_rule(file: String, tag: Option<&str>) -> Result<String, BadTag> {
    match tag {
        Some(tag) => Ok(format!("{file}{}", headers_rule(tag)?)),
        None => Ok(file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_build_names_its_tag_on_every_path() {
        let file = with_tag_rule("/*\n  X-Frame-Options: DENY\n".into(), Some("9bc958b0a1c2")).unwrap();
        assert_eq!(
            file,
            "/*\n  X-Frame-Options: DENY\n# The version tag this build was uploaded with (EDGESTACK_VERSION_TAG).\n/*\n  x-edgestack-version-tag: 9bc958b0a1c2\n"
        );
        assert_eq!(with_tag_rule("/*\n".into(), None).unwrap(), "/*\n");
    }

    #[test]
    fn tags_that_would_break_a_header_line_or_read_as_an_option_are_refused() {
        for good in ["9bc958b0a1c2", "v1.4.0", "release_2026-11-30"] {
            assert!(check_tag(good).is_ok(), "{good}");
        }
        for bad in ["", "two words", "a\nX-Evil: 1", "tag:x", &"x".repeat(65), "-x", "--dry-run", ".hidden"] {
            assert!(headers_rule(bad).is_err(), "{bad:?}");
        }
    }
}
