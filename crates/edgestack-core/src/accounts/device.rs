//! A device that signed in before: the browser keeps a random token in an HttpOnly cookie, the
//! database only its SHA-256, bound to the account that signed in (`trusted_devices`). It is no
//! credential — the password is still required — only the signal that lets its owner sign in
//! while strangers' failures hold up untrusted attempts on the same account (`throttle`).

use super::session::SessionToken;

pub const COOKIE_NAME: &str = "__Host-edgestack_device";

/// A device token: 256 random bits, like a session token, but it outlives sign-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken(SessionToken);

impl DeviceToken {
    pub fn from_random(bytes: [u8; 32]) -> Self {
        Self(SessionToken::from_random(bytes))
    }

    /// Only well-formed tokens reach the database.
    pub fn parse(value: &str) -> Option<Self> {
        SessionToken::parse(value).map(Self)
    }

    /// What the database stores and looks up.
    pub fn hash(&self) -> String {
        self.0.hash()
    }

    /// `SameSite=Strict`: only the app's own sign-in form ever needs it.
    pub fn set_cookie(&self, max_age_seconds: i64) -> String {
        format!(
            "{COOKIE_NAME}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}",
            self.0.value()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_cookie_is_host_only_http_only_strict_and_round_trips() {
        let token = DeviceToken::from_random([4; 32]);
        let cookie = token.set_cookie(100);
        assert!(cookie.starts_with("__Host-edgestack_device="), "{cookie}");
        for attribute in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Strict", "; Max-Age=100"] {
            assert!(cookie.contains(attribute), "{attribute} in {cookie}");
        }
        let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
        assert_eq!(DeviceToken::parse(value), Some(token.clone()));
        assert_ne!(token.hash(), value, "only the hash is stored");
        assert_eq!(DeviceToken::parse("short"), None);
    }
}
