//! An email address, parsed once: trimmed, lower-cased, put in Unicode Normalization Form C,
//! its domain in A-labels, shape-checked. Not proof of ownership. An address that shows like another must not be a
//! second account: so no character in it may be invisible — white space, controls,
//! default-ignorable characters (a soft hyphen, a zero-width space, a variation selector, a
//! Hangul filler; IDNA2008 allows none of them in a domain) — and an "é" typed as one code point
//! or as "e" + U+0301 is one address (canonical equivalence, Unicode UAX #15). A new address
//! may hold no character with a compatibility mapping (µ beside μ, ﬁ beside fi, full-width
//! letters, ſ beside s: PRECIS's IdentifierClass disallows them, RFC 8264 § 9.17), since
//! lower-casing does not fold them into the letter they show as.

use std::fmt;

use crate::text::{Form, is_visible};

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

/// What an account's address is compared as: `typed` trimmed, lower-cased (Unicode's default
/// case conversion), put in NFC by `normalize`; then each label of the domain (after the last
/// `@`) that is not ASCII is written as its A-label, `xn--` and its Punycode (RFC 5890,
/// RFC 3492). Lower-casing comes first because it can leave a text that is no longer in NFC. A
/// domain has one name in DNS, its A-labels, and a browser's email field sends that form
/// (`a@xn--cole-9oa.fr` for `a@école.fr`), so both spellings must be one account.
pub fn fold(typed: &str, normalize: impl Fn(&str, Form) -> String) -> String {
    with_a_labels(normalize(&typed.trim().to_lowercase(), Form::Nfc))
}

/// `address` with each label of its domain that is not ASCII written as its A-label.
fn with_a_labels(address: String) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => {
            let labels: Vec<String> = domain.split('.').map(a_label).collect();
            format!("{local}@{}", labels.join("."))
        }
        _ => address,
    }
}

/// `label` as DNS knows it: unchanged if ASCII, else `xn--` and its Punycode. Encoding fails only
/// past the DNS limit of 63 bytes a label; such a label stays as it is, and an address holding
/// it is too long anyway.
fn a_label(label: &str) -> String {
    if label.is_ascii() {
        return label.to_string();
    }
    idna::punycode::encode_str(label).map_or_else(|| label.to_string(), |code| format!("xn--{code}"))
}

impl Email {
    /// `input` folded (`fold`) and shape-checked: a new address, as sign-up takes it (sign-in
    /// only folds, so an account made before a rule still signs in). Invisible characters are
    /// looked for before the domain is put in A-labels, which would hide them in Punycode, and
    /// so are characters with a compatibility mapping (the NFC text is not its own NFKC); the
    /// lengths (RFC 5321: 254 and 64 bytes) are those of the folded address.
    pub fn parse(input: &str, normalize: impl Fn(&str, Form) -> String) -> Result<Self, InvalidEmail> {
        let unicode = normalize(&input.trim().to_lowercase(), Form::Nfc);
        let invisible = |c: char| c.is_control() || !is_visible(c);
        if unicode.chars().any(invisible) || (!unicode.is_ascii() && normalize(&unicode, Form::Nfkc) != unicode) {
            return Err(InvalidEmail);
        }
        let email = with_a_labels(unicode);
        if email.is_empty() || email.len() > MAX_LENGTH {
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

    fn normalize(text: &str, form: Form) -> String {
        use unicode_normalization::UnicodeNormalization;
        match form {
            Form::Nfc => text.nfc().collect(),
            Form::Nfkc => text.nfkc().collect(),
        }
    }

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(Email::parse(input, normalize).ok().map(|e| e.0), expected.map(String::from), "{input:?}");
    }

    #[test]
    fn accepts_and_normalizes() {
        check("Ada@Example.COM", Some("ada@example.com"));
        check("  a.b+tag@sub.example.org ", Some("a.b+tag@sub.example.org"));
    }

    #[test]
    fn an_address_typed_composed_or_decomposed_is_one_address() {
        check("zoe\u{308}@example.com", Some("zo\u{eb}@example.com"));
        check("ZOE\u{308}@EXAMPLE.COM", Some("zo\u{eb}@example.com"));
        check("zo\u{eb}@e\u{301}cole.fr", Some("zo\u{eb}@xn--cole-9oa.fr"));
    }

    #[test]
    fn a_new_address_holds_no_character_with_a_compatibility_mapping() {
        // Each shows as, but does not lower-case to, the plain letter beside it.
        for (compatibility, plain) in [
            ("\u{b5}@example.com", "\u{3bc}@example.com"),
            ("\u{fb01}le@example.com", "file@example.com"),
            ("\u{ff41}da@example.com", "ada@example.com"),
            ("ro\u{17f}e@example.com", "rose@example.com"),
            ("\u{3d0}eta@example.com", "\u{3b2}eta@example.com"),
            ("ada@\u{ff45}xample.com", "ada@example.com"),
        ] {
            check(compatibility, None);
            assert!(Email::parse(plain, normalize).is_ok(), "{plain:?}");
        }
        // Folding alone, as sign-in does it, still finds an account made before the rule.
        assert_eq!(fold("\u{b5}@example.com", normalize), "\u{b5}@example.com");
    }

    #[test]
    fn a_domain_is_folded_to_its_a_labels() {
        check("Ada@\u{c9}cole.FR", Some("ada@xn--cole-9oa.fr"));
        check("ada@XN--COLE-9OA.fr", Some("ada@xn--cole-9oa.fr"));
        check("zo\u{eb}@b\u{fc}cher.m\u{fc}nchen.de", Some("zo\u{eb}@xn--bcher-kva.xn--mnchen-3ya.de"));
        // The local part keeps its letters: only a domain has a second spelling.
        check("zo\u{eb}@example.com", Some("zo\u{eb}@example.com"));
        // A label too long to encode makes an address too long to take.
        check(&format!("a@{}.com", "\u{10fffd}".repeat(4000)), None);
        // An invisible character is refused, not hidden in Punycode.
        check("a@ex\u{ad}ample.com", None);
    }

    #[test]
    fn folding_lower_cases_before_it_normalizes() {
        // "Å" as the Ångström sign lower-cases to "å" (one code point, NFC); the same as
        // "A" + ring above: one address however it was typed.
        assert_eq!(fold("\u{212b}@x.org", normalize), fold("A\u{30a}@x.org", normalize));
        assert_eq!(fold("\u{212b}@x.org", normalize), "\u{e5}@x.org");
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
