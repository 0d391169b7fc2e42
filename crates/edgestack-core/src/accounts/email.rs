//! An email address, parsed once: trimmed, lower-cased, shape-checked. Not proof of ownership.
//! No character in it may be invisible — white space, controls, default-ignorable characters
//! (a soft hyphen, a zero-width space, a variation selector, a Hangul filler): an address that
//! shows like another must not be a second account (IDNA2008 allows none of them in a domain). Not normalized to NFC: an account's
//! address is compared as it was typed.

use std::fmt;

use crate::text::is_visible;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// The input does not look like an email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidEmail;

impl fmt::Display for InvalidEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("enter a valid email address")
    }
}

const MAX_LENGTH: usize = 254;

impl Email {
    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let email = input.trim().to_lowercase();
        let invisible = |c: char| c.is_control() || !is_visible(c);
        if email.is_empty() || email.len() > MAX_LENGTH || email.chars().any(invisible) {
            return Err(InvalidEmail);
        }
        let (local, domain) = email.rsplit_once('@').ok_or(InvalidEmail)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(InvalidEmail);
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(Email::parse(input).ok().map(|e| e.0), expected.map(String::from), "{input:?}");
    }

    #[test]
    fn accepts_and_normalizes() {
        check("Ada@Example.COM", Some("ada@example.com"));
        check("  a.b+tag@sub.example.org ", Some("a.b+tag@sub.example.org"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@.example.com",
            "ada@example..com",
            "ada@example.com.",
            "a\u{0}@example.com",
            "a@ex\u{ad}ample.com",
            "a@example.com\u{200b}",
            "\u{feff}a@example.com",
            "a\u{200d}@example.com",
            "a\u{34f}@example.com",
            "a\u{fe0f}@example.com",
            "a\u{3164}@example.com",
            "a\u{e0100}@example.com",
            "a\u{fff9}@example.com",
            "a\u{13430}b@example.com",
        ] {
            check(bad, None);
        }
        check(&format!("{}@example.com", "a".repeat(65)), None);
        check(&format!("a@{}.com", "b".repeat(260)), None);
    }
}
