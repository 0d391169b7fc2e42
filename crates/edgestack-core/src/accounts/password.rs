//! Passwords: how a typed one is compared (RFC 8265's OpaqueString), the policy (ASVS 5.0
//! 6.2.1/6.2.9: 8 to 128 characters, no composition rules; 6.2.4: none of the most common
//! passwords) and Argon2id hashing in PHC strings, compiled into the wasm.

use std::borrow::Cow;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::common_passwords;
use crate::text::Form;

const MIN_CHARS: usize = 8;
const MAX_CHARS: usize = 128;

/// A password as its owner typed it, and the form it is hashed and compared in: RFC 8265's
/// OpaqueString (§ 4.2): a space other than U+0020 (Unicode's general category Zs: the no-break
/// space a keyboard's Option-space types, the ideographic space, …) becomes U+0020, then the
/// text is put in NFC. One password then has one form whichever device typed it: "ö" as one
/// code point or as `o` + U+0308 (macOS and some keyboards) were two passwords. Case and width
/// are kept, as the profile says; its refusal of control characters is not applied, so that
/// no password chosen before is refused now. Its `Debug` never shows it.
pub struct TypedPassword<'a> {
    typed: &'a str,
    prepared: Cow<'a, str>,
}

impl std::fmt::Debug for TypedPassword<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TypedPassword(<redacted>)")
    }
}

impl<'a> TypedPassword<'a> {
    /// `normalize` is `Platform::normalize`; an ASCII password never needs it.
    pub fn new(typed: &'a str, normalize: impl Fn(&str, Form) -> String) -> Self {
        if typed.is_ascii() {
            return Self { typed, prepared: Cow::Borrowed(typed) };
        }
        let spaced: String = typed.chars().map(|c| if is_non_ascii_space(c) { ' ' } else { c }).collect();
        Self { typed, prepared: Cow::Owned(normalize(&spaced, Form::Nfc)) }
    }

    /// The form that is hashed and compared.
    pub fn prepared(&self) -> &str {
        &self.prepared
    }
}

/// Unicode 16.0's general category Zs other than U+0020 (RFC 8265 § 4.2.1, "non-ASCII space").
fn is_non_ascii_space(c: char) -> bool {
    matches!(c, '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// A password that meets the policy, in its compared form. Its `Debug` never shows it.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Which rule of the policy a new password breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeakPassword {
    /// Fewer than `MIN_CHARS` or more than `MAX_CHARS` characters.
    Length,
    /// One of the most common passwords ([`common_passwords`]).
    Common,
}

impl std::fmt::Display for WeakPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length => write!(f, "use a password of {MIN_CHARS} to {MAX_CHARS} characters"),
            Self::Common => f.write_str("this password is one of the most common ones; choose another"),
        }
    }
}

impl Password {
    /// A password someone is choosing (sign-up, password change): its compared form must meet
    /// the policy (RFC 8265 § 4.2: rules apply after the preparation).
    pub fn parse(input: &TypedPassword) -> Result<Self, WeakPassword> {
        let input = input.prepared();
        let chars = input.chars().count();
        if !(MIN_CHARS..=MAX_CHARS).contains(&chars) {
            return Err(WeakPassword::Length);
        }
        if common_passwords::is_common(input) {
            return Err(WeakPassword::Common);
        }
        Ok(Self(input.to_string()))
    }

    /// A password that was just verified against its stored hash, to hash again with today's
    /// parameters or in its compared form: the policy applied when it was chosen, and a rule
    /// added since (a longer common list) must not stop its owner from signing in.
    pub fn verified(input: &TypedPassword) -> Self {
        Self(input.prepared().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Argon2id with OWASP's minimum: 19 MiB, 2 passes, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

pub const CURRENT_COST: HashCost = HashCost { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 };
// Never below OWASP's Argon2id floor, checked when compiling.
const _: () = assert!(CURRENT_COST.memory_kib >= 19 * 1024 && CURRENT_COST.iterations >= 2);

pub struct PasswordHasher {
    cost: HashCost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Mismatch,
    Match,
    /// Correct, but hashed with other parameters: store a new hash.
    MatchNeedsRehash,
}

impl PasswordHasher {
    pub fn new(cost: HashCost) -> Self {
        Self { cost }
    }

    fn argon2(&self) -> Result<Argon2<'static>, String> {
        let params = Params::new(self.cost.memory_kib, self.cost.iterations, self.cost.parallelism, None)
            .map_err(|e| e.to_string())?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// `salt` must be 16 fresh random bytes.
    pub fn hash(&self, password: &Password, salt: &[u8; 16]) -> Result<String, String> {
        let salt = SaltString::encode_b64(salt).map_err(|e| e.to_string())?;
        let hash = self.argon2()?.hash_password(password.as_str().as_bytes(), &salt).map_err(|e| e.to_string())?;
        Ok(hash.to_string())
    }

    /// Whether `password` is the one `stored` was made from: its compared form, or, for a hash
    /// an earlier release made of the password exactly as typed, its typed form — then
    /// [`Verification::MatchNeedsRehash`], so that the next hash is of the compared form. A
    /// typed form that differs costs a second hash whether the account exists or not, so the
    /// time taken still says nothing about the account. Constant-time comparison (inside
    /// argon2). A malformed stored hash never matches.
    pub fn verify(&self, password: &TypedPassword, stored: &str) -> Verification {
        match self.verify_bytes(password.prepared(), stored) {
            Verification::Mismatch if password.typed != password.prepared() => {
                match self.verify_bytes(password.typed, stored) {
                    Verification::Mismatch => Verification::Mismatch,
                    Verification::Match | Verification::MatchNeedsRehash => Verification::MatchNeedsRehash,
                }
            }
            verification => verification,
        }
    }

    fn verify_bytes(&self, password: &str, stored: &str) -> Verification {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return Verification::Mismatch;
        };
        // Verify with the parameters stored in the hash, whatever today's are.
        if Argon2::default().verify_password(password.as_bytes(), &parsed).is_err() {
            return Verification::Mismatch;
        }
        let current = Params::try_from(&parsed).ok().is_some_and(|params| {
            params.m_cost() == self.cost.memory_kib
                && params.t_cost() == self.cost.iterations
                && params.p_cost() == self.cost.parallelism
        });
        if current && parsed.algorithm.as_str() == "argon2id" {
            Verification::Match
        } else {
            Verification::MatchNeedsRehash
        }
    }
}

/// A hash no password matches, verified when the email is unknown so that a sign-in for a
/// missing account costs the same time as one with a wrong password.
pub const UNKNOWN_ACCOUNT_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$oV6cmFDC2rIXSNJTHl4pY7T5GKxhHuuswQ7z4eWYr2g";

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters keep unit tests fast; the cost itself is covered by the integration tests.
    const TEST_COST: HashCost = HashCost { memory_kib: 64, iterations: 1, parallelism: 1 };

    fn typed(text: &str) -> TypedPassword<'_> {
        TypedPassword::new(text, |text, form| {
            use unicode_normalization::UnicodeNormalization;
            match form {
                Form::Nfc => text.nfc().collect(),
                Form::Nfkc => text.nfkc().collect(),
            }
        })
    }

    fn parse(text: &str) -> Result<Password, WeakPassword> {
        Password::parse(&typed(text))
    }

    #[test]
    fn the_compared_form_is_opaque_string() {
        assert_eq!(typed("o\u{308}\u{a0}x\u{3000}y\u{2009}z").prepared(), "\u{f6} x y z");
        // Case, width, compatibility forms and other white space are kept (RFC 8265 § 4.2.1).
        for kept in ["Ab\u{ff21}\u{fb01}\u{b2}", "a\tb\u{2028}c", "\u{f6}"] {
            assert_eq!(typed(kept).prepared(), kept, "{kept:?}");
        }
        assert!(!format!("{:?}", typed("secret-password")).contains("secret"));
    }

    #[test]
    fn policy_is_length_and_not_common() {
        assert!(parse("correct horse battery staple").is_ok());
        assert_eq!(crate::error::ApiError::from(parse("1234567").unwrap_err()).code(), "weak_password");
        assert_eq!(parse("1234567").unwrap_err(), WeakPassword::Length);
        assert!(parse(&"y".repeat(128)).is_ok());
        assert_eq!(parse(&"y".repeat(129)).unwrap_err(), WeakPassword::Length);
        assert!(parse("ünïcödé!").is_ok(), "8 characters, more bytes");
        assert_eq!(parse("abcdefe\u{301}").unwrap_err(), WeakPassword::Length, "7 characters once composed");
        for common in ["12345678", "password", "Password1", "qwertyui", "11111111", "iloveyou"] {
            assert_eq!(parse(common).unwrap_err(), WeakPassword::Common, "{common}");
        }
        assert_eq!(crate::error::ApiError::from(WeakPassword::Common).code(), "weak_password");
        assert!(!format!("{:?}", parse("secret-password").unwrap()).contains("secret"));
    }

    #[test]
    fn hash_is_argon2id_phc_and_verifies() {
        let hasher = PasswordHasher::new(TEST_COST);
        let hash = hasher.hash(&parse("correct horse").unwrap(), &[7; 16]).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert_eq!(hasher.verify(&typed("correct horse"), &hash), Verification::Match);
        assert_eq!(hasher.verify(&typed("correct horsf"), &hash), Verification::Mismatch);
        assert_eq!(hasher.verify(&typed("correct horse"), "not a hash"), Verification::Mismatch);
    }

    #[test]
    fn a_hash_of_the_typed_form_matches_and_asks_for_a_rehash() {
        let hasher = PasswordHasher::new(TEST_COST);
        let decomposed = "Schlu\u{308}ssel\u{a0}eins";
        let as_typed = Password(decomposed.to_string());
        let legacy = hasher.hash(&as_typed, &[3; 16]).unwrap();
        assert_eq!(hasher.verify(&typed(decomposed), &legacy), Verification::MatchNeedsRehash);
        assert_eq!(hasher.verify(&typed("Schl\u{fc}ssel eins"), &legacy), Verification::Mismatch);
        let current = hasher.hash(&Password::verified(&typed(decomposed)), &[3; 16]).unwrap();
        assert_eq!(hasher.verify(&typed("Schl\u{fc}ssel eins"), &current), Verification::Match);
        assert_eq!(hasher.verify(&typed(decomposed), &current), Verification::Match);
    }

    #[test]
    fn other_parameters_ask_for_a_rehash() {
        let old = PasswordHasher::new(TEST_COST).hash(&parse("correct horse").unwrap(), &[1; 16]).unwrap();
        let stronger = PasswordHasher::new(HashCost { memory_kib: 128, ..TEST_COST });
        assert_eq!(stronger.verify(&typed("correct horse"), &old), Verification::MatchNeedsRehash);
    }

    #[test]
    fn unknown_account_hash_is_well_formed_and_matches_nothing_typical() {
        let hasher = PasswordHasher::new(CURRENT_COST);
        assert_eq!(hasher.verify(&typed("password"), UNKNOWN_ACCOUNT_HASH), Verification::Mismatch);
        assert!(PasswordHash::new(UNKNOWN_ACCOUNT_HASH).is_ok());
    }
}
