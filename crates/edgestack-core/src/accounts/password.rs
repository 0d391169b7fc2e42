//! Passwords: the policy (ASVS 5.0 6.2.1/6.2.9: 8 to 128 characters, no composition rules;
//! 6.2.4: none of the most common passwords) and Argon2id hashing in PHC strings, compiled into
//! the wasm.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::common_passwords;

const MIN_CHARS: usize = 8;
const MAX_CHARS: usize = 128;

/// A password that meets the policy. Its `Debug` never shows it.
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
    /// A password someone is choosing (sign-up, password change): it must meet the policy.
    pub fn parse(input: &str) -> Result<Self, WeakPassword> {
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
    /// parameters: the policy applied when it was chosen, and a rule added since (a longer
    /// common list) must not stop its owner from signing in.
    pub fn verified(input: &str) -> Self {
        Self(input.to_string())
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

    /// Constant-time comparison (inside argon2). A malformed stored hash never matches.
    pub fn verify(&self, password: &str, stored: &str) -> Verification {
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

    #[test]
    fn policy_is_length_and_not_common() {
        assert!(Password::parse("correct horse battery staple").is_ok());
        assert_eq!(crate::error::ApiError::from(Password::parse("1234567").unwrap_err()).code(), "weak_password");
        assert_eq!(Password::parse("1234567").unwrap_err(), WeakPassword::Length);
        assert!(Password::parse(&"y".repeat(128)).is_ok());
        assert_eq!(Password::parse(&"y".repeat(129)).unwrap_err(), WeakPassword::Length);
        assert!(Password::parse("ünïcödé!").is_ok(), "8 characters, more bytes");
        for common in ["12345678", "password", "Password1", "qwertyui", "11111111", "iloveyou"] {
            assert_eq!(Password::parse(common).unwrap_err(), WeakPassword::Common, "{common}");
        }
        assert_eq!(crate::error::ApiError::from(WeakPassword::Common).code(), "weak_password");
        assert!(!format!("{:?}", Password::parse("secret-password").unwrap()).contains("secret"));
    }

    #[test]
    fn hash_is_argon2id_phc_and_verifies() {
        let hasher = PasswordHasher::new(TEST_COST);
        let hash = hasher.hash(&Password::parse("correct horse").unwrap(), &[7; 16]).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert_eq!(hasher.verify("correct horse", &hash), Verification::Match);
        assert_eq!(hasher.verify("correct horsf", &hash), Verification::Mismatch);
        assert_eq!(hasher.verify("correct horse", "not a hash"), Verification::Mismatch);
    }

    #[test]
    fn other_parameters_ask_for_a_rehash() {
        let old = PasswordHasher::new(TEST_COST).hash(&Password::parse("correct horse").unwrap(), &[1; 16]).unwrap();
        let stronger = PasswordHasher::new(HashCost { memory_kib: 128, ..TEST_COST });
        assert_eq!(stronger.verify("correct horse", &old), Verification::MatchNeedsRehash);
    }

    #[test]
    fn unknown_account_hash_is_well_formed_and_matches_nothing_typical() {
        let hasher = PasswordHasher::new(CURRENT_COST);
        assert_eq!(hasher.verify("password", UNKNOWN_ACCOUNT_HASH), Verification::Mismatch);
        assert!(PasswordHash::new(UNKNOWN_ACCOUNT_HASH).is_ok());
    }
}
