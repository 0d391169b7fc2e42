//! Session tokens and cookies. A token is 256 random bits shown to the client once, in an
//! HttpOnly cookie; the database keeps only its SHA-256, so a leaked table signs nobody in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub const COOKIE_NAME: &str = "__Host-edgestack_session";
const TOKEN_CHARS: usize = 43;

#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl SessionToken {
    pub fn from_random(bytes: [u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Only well-formed tokens reach the database.
    pub fn parse(value: &str) -> Option<Self> {
        let well_formed = value.len() == TOKEN_CHARS && URL_SAFE_NO_PAD.decode(value).is_ok_and(|b| b.len() == 32);
        well_formed.then(|| Self(value.to_string()))
    }

    /// The token as the cookie carries it.
    pub(crate) fn value(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks up.
    pub fn hash(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes()))
    }

    pub fn set_cookie(&self, max_age_seconds: i64) -> String {
        format!("{COOKIE_NAME}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}", self.0)
    }
}

pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The three values every signed-in statement starts with: `?1` the token's hash, `?2` now,
/// `?3` the oldest `last_seen_at` that is still active (now − idle timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAuth {
    pub token_hash: String,
    pub now: i64,
    pub active_since: i64,
}

impl SessionAuth {
    pub fn new(token: &SessionToken, policy: &SessionPolicy, now: i64) -> Self {
        Self { token_hash: token.hash(), now, active_since: now - policy.idle_ms }
    }

    pub fn args(&self) -> Vec<crate::db::Value> {
        vec![crate::db::text(&self.token_hash), crate::db::integer(self.now), crate::db::integer(self.active_since)]
    }
}

/// How long sessions live. Both limits are checked in the same SQL that uses the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Signed out after this long without activity.
    pub idle_ms: i64,
    /// Signed out this long after sign-in, whatever the activity.
    pub absolute_ms: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self { idle_ms: 7 * DAY_MS, absolute_ms: 30 * DAY_MS }
    }
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl SessionPolicy {
    /// Activity is recorded at most this often, so reads do not turn into writes.
    pub fn touch_interval_ms(&self) -> i64 {
        (self.idle_ms / 8).clamp(1_000, 60 * 60 * 1000)
    }

    /// Cookie lifetime: never longer than the session itself.
    pub fn cookie_max_age_seconds(&self) -> i64 {
        self.absolute_ms / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_through_cookie() {
        let token = SessionToken::from_random([9; 32]);
        let set = token.set_cookie(3600);
        assert!(set.starts_with("__Host-edgestack_session="));
        for attribute in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax", "; Max-Age=3600"] {
            assert!(set.contains(attribute), "{attribute} in {set}");
        }
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        assert_eq!(SessionToken::parse(value), Some(token));
    }

    #[test]
    fn malformed_tokens_are_ignored() {
        for value in ["", "short", &"!".repeat(43), "' OR 1=1 --", &"A".repeat(44)] {
            assert_eq!(SessionToken::parse(value), None, "{value}");
        }
    }

    #[test]
    fn hash_differs_from_token_and_is_stable() {
        let token = SessionToken::from_random([1; 32]);
        assert_ne!(token.hash(), token.0);
        assert_eq!(token.hash(), SessionToken::from_random([1; 32]).hash());
        assert_ne!(token.hash(), SessionToken::from_random([2; 32]).hash());
        assert!(!format!("{token:?}").contains(&token.0));
    }

    #[test]
    fn touch_interval_is_a_fraction_of_idle() {
        assert_eq!(SessionPolicy::default().touch_interval_ms(), 60 * 60 * 1000);
        assert_eq!(SessionPolicy { idle_ms: 4_000, absolute_ms: 8_000 }.touch_interval_ms(), 1_000);
    }
}
