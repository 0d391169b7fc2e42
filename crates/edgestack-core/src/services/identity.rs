//! Who the caller is, as `accounts` vouches for it to other services: a short-lived token that
//! `accounts` signs with Ed25519 and any service verifies with the public key alone — so a
//! compromised `notes` can check identities but never mint one, and a request needs no hop to
//! `accounts` while its token is valid.
//!
//! Revocation bound: a token outlives the session it came from by at most `IDENTITY_TTL_MS`
//! (plus the replica lag of the session check that issued it). A token names the session it
//! was issued for (`sid`, the session token's hash), so it is worthless without that session's
//! cookie and stops working at once when the browser signs in as someone else.
//!
//! A token also names what it is (`typ`: an identity) and whom it is for (`aud`: the notes
//! service, which the entry checks it for), so nothing else the key might ever sign can pass
//! for one, and it is accepted by no service it was not issued to (ASVS 5.0 9.2.2, 9.2.3,
//! 9.2.4). Tokens without the two claims are the previous release's: `accounts` issued them
//! while a newer `notes` or entry may already run (services deploy in any order,
//! `tests/api/contract.rs`), and they expire within [`IDENTITY_TTL_MS`] of issue. Once the
//! previous release issues the claims too, `LEGACY_UNBOUND` goes and they become required.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

pub const IDENTITY_TTL_MS: i64 = 60_000;
/// Still 1: the previous `notes` release refuses any other version, and ignores the claims
/// this one adds (`typ`, `aud`).
const TOKEN_VERSION: u8 = 1;
/// What an identity token is (`typ`).
pub const IDENTITY_TYPE: &str = "edgestack-identity";
/// Whom it is for (`aud`): the notes service, on whose behalf the entry also checks it.
pub const IDENTITY_AUDIENCE: &str = "notes";
/// Whether a token without `typ` and `aud` (the previous release's) is still accepted.
const LEGACY_UNBOUND: bool = true;
/// How far in the future a token's issue time may be and still be believed: the Workers of
/// one deployment read the same clock, so this only absorbs rounding.
const CLOCK_SKEW_MS: i64 = 5_000;

/// Where the browser keeps its identity between requests, so the entry asks `accounts` for a
/// new one only once a minute.
pub const IDENTITY_COOKIE: &str = "__Host-edgestack_identity";
/// How the entry hands a verified identity to `notes`.
pub const IDENTITY_HEADER: &str = "x-edgestack-identity";

/// The cookie outlives the identity by under a second at most; the identity's own expiry is
/// what counts.
pub fn set_identity_cookie(token: &str, lifetime_ms: i64) -> String {
    let max_age = (lifetime_ms.clamp(1, IDENTITY_TTL_MS) + 999) / 1000;
    format!("{IDENTITY_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}")
}

pub fn clear_identity_cookie() -> String {
    format!("{IDENTITY_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "v")]
    pub version: u8,
    #[serde(rename = "sub")]
    pub user_id: String,
    /// The hash of the session token the identity was issued for.
    #[serde(rename = "sid")]
    pub session_hash: String,
    #[serde(rename = "iat")]
    pub issued_at_ms: i64,
    #[serde(rename = "exp")]
    pub expires_at_ms: i64,
    /// [`IDENTITY_TYPE`]; absent in the previous release's tokens.
    #[serde(rename = "typ", default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// [`IDENTITY_AUDIENCE`]; absent in the previous release's tokens.
    #[serde(rename = "aud", default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    Malformed,
    BadSignature,
    Expired,
    UnsupportedVersion,
    OtherSession,
    /// Signed by `accounts` but not an identity (another `typ`).
    WrongType,
    /// An identity for another service (another `aud`).
    WrongAudience,
    /// Issued in the future.
    NotYetValid,
}

impl IdentityError {
    /// Whether the token is sound and only not (or not yet, or no longer) the caller's: it
    /// expired, belongs to another session, or was issued in the future. The other refusals say
    /// the token is not one this key and build accept at all — which, for an identity the entry
    /// verified before forwarding it, means the two hold different keys (a key rotated on one
    /// side only), not that the caller is signed out.
    pub fn is_about_the_caller(self) -> bool {
        matches!(self, Self::Expired | Self::OtherSession | Self::NotYetValid)
    }
}

/// 32 bytes as unpadded base64url: how keys travel in vars and secrets.
pub fn decode_key(value: &str) -> Option<[u8; 32]> {
    URL_SAFE_NO_PAD.decode(value.trim()).ok()?.try_into().ok()
}

pub fn encode_key(key: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

#[derive(Clone)]
pub struct IdentitySigner {
    key: SigningKey,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentitySigner(<redacted>)")
    }
}

impl PartialEq for IdentitySigner {
    fn eq(&self, other: &Self) -> bool {
        self.verifying_key() == other.verifying_key()
    }
}

impl Eq for IdentitySigner {}

impl IdentitySigner {
    /// From the 32-byte secret seed (a Worker secret of `accounts` only).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(seed) }
    }

    /// The public half, for the services that verify.
    pub fn verifying_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// An identity valid for `lifetime_ms`, capped at [`IDENTITY_TTL_MS`].
    pub fn sign(&self, user_id: &str, session_hash: &str, now_ms: i64, lifetime_ms: i64) -> String {
        let identity = Identity {
            version: TOKEN_VERSION,
            user_id: user_id.to_string(),
            session_hash: session_hash.to_string(),
            issued_at_ms: now_ms,
            expires_at_ms: now_ms + lifetime_ms.clamp(1, IDENTITY_TTL_MS),
            token_type: Some(IDENTITY_TYPE.to_string()),
            audience: Some(IDENTITY_AUDIENCE.to_string()),
        };
        // Serializing a struct of strings and integers cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&identity).unwrap_or_default());
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes());
        format!("{payload}.{signature}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityVerifier {
    key: VerifyingKey,
}

impl IdentityVerifier {
    pub fn from_public_key(bytes: &[u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(bytes).ok().map(|key| Self { key })
    }

    /// The identity in `token` if `accounts` signed it, it has not expired, and it was issued
    /// for the session whose token hashes to `session_hash`.
    pub fn verify_for_session(&self, token: &str, session_hash: &str, now_ms: i64) -> Result<Identity, IdentityError> {
        let identity = self.verify(token, now_ms)?;
        if identity.session_hash != session_hash {
            return Err(IdentityError::OtherSession);
        }
        Ok(identity)
    }

    /// The identity in `token`: its signature checked before anything in it is read (ASVS 5.0
    /// 9.1.1; Ed25519 only, with the configured public key: 9.1.2, 9.1.3), then its type and
    /// audience (9.2.2, 9.2.3) and its validity span (9.2.1).
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Identity, IdentityError> {
        let (payload, signature) = token.split_once('.').ok_or(IdentityError::Malformed)?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(IdentityError::Malformed)?;
        self.key
            .verify(payload.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| IdentityError::BadSignature)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| IdentityError::Malformed)?;
        let identity: Identity = serde_json::from_slice(&json).map_err(|_| IdentityError::Malformed)?;
        if identity.version != TOKEN_VERSION {
            return Err(IdentityError::UnsupportedVersion);
        }
        let bound = |claim: &Option<String>, expected: &str| match claim {
            Some(value) => value == expected,
            None => LEGACY_UNBOUND,
        };
        if !bound(&identity.token_type, IDENTITY_TYPE) {
            return Err(IdentityError::WrongType);
        }
        if !bound(&identity.audience, IDENTITY_AUDIENCE) {
            return Err(IdentityError::WrongAudience);
        }
        if identity.issued_at_ms > now_ms + CLOCK_SKEW_MS {
            return Err(IdentityError::NotYetValid);
        }
        if now_ms >= identity.expires_at_ms {
            return Err(IdentityError::Expired);
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(seed: u8) -> (IdentitySigner, IdentityVerifier) {
        let signer = IdentitySigner::from_seed(&[seed; 32]);
        let verifier = IdentityVerifier::from_public_key(&signer.verifying_key()).unwrap();
        (signer, verifier)
    }

    #[test]
    fn a_signed_identity_verifies_until_it_expires() {
        let (signer, verifier) = pair(1);
        let token = signer.sign("user-1", "session-a", 1_000, IDENTITY_TTL_MS);
        let identity = verifier.verify_for_session(&token, "session-a", 1_000 + IDENTITY_TTL_MS - 1).unwrap();
        assert_eq!((identity.user_id.as_str(), identity.issued_at_ms), ("user-1", 1_000));
        assert_eq!(verifier.verify(&token, 1_000 + IDENTITY_TTL_MS), Err(IdentityError::Expired));
        assert_eq!(verifier.verify_for_session(&token, "session-b", 1_001), Err(IdentityError::OtherSession));
    }

    #[test]
    fn only_the_signing_key_makes_valid_tokens() {
        let (signer, verifier) = pair(1);
        let (other_signer, _) = pair(2);
        assert_eq!(
            verifier.verify(&other_signer.sign("user-1", "s", 0, IDENTITY_TTL_MS), 1),
            Err(IdentityError::BadSignature)
        );
        let token = signer.sign("user-1", "s", 0, IDENTITY_TTL_MS);
        let (payload, signature) = token.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"v":1,"sub":"admin","sid":"s","iat":0,"exp":99999999999}"#);
        assert_eq!(verifier.verify(&format!("{forged_payload}.{signature}"), 1), Err(IdentityError::BadSignature));
        assert_eq!(verifier.verify(&format!("{payload}.AAAA"), 1), Err(IdentityError::Malformed));
        for garbage in ["", "x", "a.b.c", "!!.!!"] {
            assert!(verifier.verify(garbage, 1).is_err(), "{garbage}");
        }
    }

    #[test]
    fn a_short_lifetime_is_honoured_and_a_long_one_capped() {
        let (signer, verifier) = pair(3);
        assert_eq!(verifier.verify(&signer.sign("u", "s", 0, 1_000), 1_000), Err(IdentityError::Expired));
        let capped = verifier.verify(&signer.sign("u", "s", 0, 10 * IDENTITY_TTL_MS), 1).unwrap();
        assert_eq!(capped.expires_at_ms, IDENTITY_TTL_MS);
        assert!(set_identity_cookie("t", 1_500).ends_with("Max-Age=2"));
    }

    /// A payload signed with the identity key, as `accounts` would sign it.
    fn signed(signer: &IdentitySigner, payload: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let signature = URL_SAFE_NO_PAD.encode(signer.key.sign(payload.as_bytes()).to_bytes());
        format!("{payload}.{signature}")
    }

    #[test]
    fn an_identity_names_its_type_and_audience_and_nothing_else_signed_passes_for_one() {
        let (signer, verifier) = pair(5);
        let token = signer.sign("u", "s", 0, IDENTITY_TTL_MS);
        let identity = verifier.verify(&token, 1).unwrap();
        assert_eq!(identity.token_type.as_deref(), Some(IDENTITY_TYPE));
        assert_eq!(identity.audience.as_deref(), Some(IDENTITY_AUDIENCE));
        let claims = |typ: &str, aud: &str| {
            format!(r#"{{"v":1,"sub":"u","sid":"s","iat":0,"exp":60000,"typ":"{typ}","aud":"{aud}"}}"#)
        };
        let other_type = signed(&signer, &claims("edgestack-device", IDENTITY_AUDIENCE));
        assert_eq!(verifier.verify(&other_type, 1), Err(IdentityError::WrongType));
        let other_audience = signed(&signer, &claims(IDENTITY_TYPE, "accounts"));
        assert_eq!(verifier.verify(&other_audience, 1), Err(IdentityError::WrongAudience));
        let future = signer.sign("u", "s", 100_000, IDENTITY_TTL_MS);
        assert_eq!(verifier.verify(&future, 100_000 - CLOCK_SKEW_MS - 1), Err(IdentityError::NotYetValid));
        assert!(verifier.verify(&future, 100_000 - CLOCK_SKEW_MS).is_ok(), "rounding between Workers");
    }

    /// The previous release's tokens carry neither claim; while it may still issue them they
    /// verify (`LEGACY_UNBOUND`), and only until they expire.
    #[test]
    fn the_previous_releases_unbound_tokens_verify_until_they_expire() {
        let (signer, verifier) = pair(6);
        let legacy = signed(&signer, r#"{"v":1,"sub":"u","sid":"s","iat":0,"exp":60000}"#);
        assert_eq!(verifier.verify(&legacy, 1).map(|identity| identity.audience), Ok(None));
        assert_eq!(verifier.verify(&legacy, 60_000), Err(IdentityError::Expired));
    }

    #[test]
    fn keys_travel_as_base64url() {
        let (signer, _) = pair(7);
        let public = encode_key(&signer.verifying_key());
        assert_eq!(decode_key(&public), Some(signer.verifying_key()));
        assert_eq!(decode_key("too-short"), None);
    }
}
