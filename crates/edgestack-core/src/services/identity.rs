//! Who the caller is, as `accounts` vouches for it to other services: a short-lived token that
//! `accounts` signs with Ed25519 and any service verifies with the public key alone — so a
//! compromised `notes` can check identities but never mint one, and a request needs no hop to
//! `accounts` while its token is valid.
//!
//! Revocation bound: a token outlives the session it came from by at most `IDENTITY_TTL_MS`
//! (plus the replica lag of the session check that issued it).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

pub const IDENTITY_TTL_MS: i64 = 60_000;
const TOKEN_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "v")]
    pub version: u8,
    #[serde(rename = "sub")]
    pub user_id: String,
    #[serde(rename = "iat")]
    pub issued_at_ms: i64,
    #[serde(rename = "exp")]
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    Malformed,
    BadSignature,
    Expired,
    UnsupportedVersion,
}

pub struct IdentitySigner {
    key: SigningKey,
}

impl IdentitySigner {
    /// From the 32-byte secret seed (a Worker secret of `accounts` only).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(seed) }
    }

    /// The public half, for the services that verify.
    pub fn verifying_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn sign(&self, user_id: &str, now_ms: i64) -> String {
        let identity = Identity {
            version: TOKEN_VERSION,
            user_id: user_id.to_string(),
            issued_at_ms: now_ms,
            expires_at_ms: now_ms + IDENTITY_TTL_MS,
        };
        // Serializing a struct of strings and integers cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&identity).unwrap_or_default());
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes());
        format!("{payload}.{signature}")
    }
}

pub struct IdentityVerifier {
    key: VerifyingKey,
}

impl IdentityVerifier {
    pub fn from_public_key(bytes: &[u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(bytes).ok().map(|key| Self { key })
    }

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
        let token = signer.sign("user-1", 1_000);
        let identity = verifier.verify(&token, 1_000 + IDENTITY_TTL_MS - 1).unwrap();
        assert_eq!((identity.user_id.as_str(), identity.issued_at_ms), ("user-1", 1_000));
        assert_eq!(verifier.verify(&token, 1_000 + IDENTITY_TTL_MS), Err(IdentityError::Expired));
    }

    #[test]
    fn only_the_signing_key_makes_valid_tokens() {
        let (signer, verifier) = pair(1);
        let (other_signer, _) = pair(2);
        assert_eq!(verifier.verify(&other_signer.sign("user-1", 0), 1), Err(IdentityError::BadSignature));
        let token = signer.sign("user-1", 0);
        let (payload, signature) = token.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"v":1,"sub":"admin","iat":0,"exp":99999999999}"#);
        assert_eq!(verifier.verify(&format!("{forged_payload}.{signature}"), 1), Err(IdentityError::BadSignature));
        assert_eq!(verifier.verify(&format!("{payload}.AAAA"), 1), Err(IdentityError::Malformed));
        for garbage in ["", "x", "a.b.c", "!!.!!"] {
            assert!(verifier.verify(garbage, 1).is_err(), "{garbage}");
        }
    }
}
