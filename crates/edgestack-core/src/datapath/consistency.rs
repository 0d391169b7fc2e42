//! The read-your-writes token: the primary's replication index after the client's last write,
//! signed with HMAC-SHA256 so a client can neither forge nor alter it. Each database has its
//! own cookie name (`Service::consistency_cookie`): replication indexes of different databases
//! are not comparable.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longer than any replica lag we tolerate; every write renews it.
const MAX_AGE_SECONDS: u32 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsistencyToken {
    pub replication_index: u64,
}

fn mac(key: &[u8], index: u64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(format!("edgestack-consistency-v1:{index}").as_bytes());
    Some(mac)
}

impl ConsistencyToken {
    pub fn encode(&self, key: &[u8]) -> Option<String> {
        let signature = mac(key, self.replication_index)?.finalize().into_bytes();
        Some(format!("{}.{}", self.replication_index, URL_SAFE_NO_PAD.encode(signature)))
    }

    /// `None` for anything not signed with `key` (constant-time check).
    pub fn decode(value: &str, key: &[u8]) -> Option<Self> {
        let (index, signature) = value.split_once('.')?;
        let replication_index: u64 = index.parse().ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        mac(key, replication_index)?.verify_slice(&signature).ok()?;
        Some(Self { replication_index })
    }

    /// The newest validly signed token among a request's cookie values: several can arrive
    /// (repeated `Cookie` fields), and the newest is the one every read must honour.
    pub fn newest<'a>(values: impl Iterator<Item = &'a str>, key: &[u8]) -> Option<Self> {
        values.filter_map(|value| Self::decode(value, key)).max()
    }

    pub fn set_cookie(&self, cookie_name: &str, key: &[u8]) -> Option<String> {
        Some(format!(
            "{cookie_name}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={MAX_AGE_SECONDS}",
            self.encode(key)?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_tampering() {
        let key = b"test key";
        let token = ConsistencyToken { replication_index: 42 };
        let encoded = token.encode(key).unwrap();
        assert_eq!(ConsistencyToken::decode(&encoded, key), Some(token));
        assert_eq!(ConsistencyToken::decode(&encoded, b"other key"), None);
        let forged = encoded.replacen("42", "4200", 1);
        assert_eq!(ConsistencyToken::decode(&forged, key), None);
        for garbage in ["", "42", "42.", "x.y", "18446744073709551616.AAAA"] {
            assert_eq!(ConsistencyToken::decode(garbage, key), None, "{garbage}");
        }
    }

    #[test]
    fn cookie_round_trip() {
        let key = b"k";
        let set = ConsistencyToken { replication_index: 7 }.set_cookie("c_notes", key).unwrap();
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        let older = ConsistencyToken { replication_index: 3 }.encode(key).unwrap();
        let token = Some(ConsistencyToken { replication_index: 7 });
        assert_eq!(ConsistencyToken::newest([older.as_str(), value, "garbage"].into_iter(), key), token);
        assert_eq!(ConsistencyToken::newest([value].into_iter(), b"another key"), None);
        assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("Max-Age=300"));
    }
}
