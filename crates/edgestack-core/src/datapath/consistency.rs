//! The read-your-writes token: the primary's term and replication index after the client's
//! last write, signed with HMAC-SHA256 so a client can neither forge nor alter it, and bound to
//! its purpose and its database so it is worth nothing anywhere else.
//!
//! Format (v2): `2.<term>.<index>.<mac>`, the MAC over
//! `edgestack-consistency-v2\n<database>\n<term>\n<index>`. Term 0 means "unknown": the worker
//! that minted it had read no primary record (Turso, or before any failover). Tokens of v1
//! (`<index>.<mac>`, bound to nothing) are not accepted: a v1 token from one database was
//! valid for every other database signed with the same key (issue #17). Dropping them costs a
//! client that wrote just before the deploy at most one read from a replica that has not
//! caught up with that write.
//!
//! What a token asks of a read ([`Requirement`]) depends on the database's history of terms
//! (docs/failover.md#read-your-writes-tokens-carry-the-term): after a failover a token of an
//! older term asks only for what its term wrote before the history moved on, because the
//! writes after that point were lost with the old primary and the same indexes now hold other
//! writes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::primary::History;

/// Longer than any replica lag we tolerate; every write renews it.
const MAX_AGE_SECONDS: u32 = 300;
const VERSION: &str = "2";

/// Ordered by term, then index: among several valid cookies the newest term's wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsistencyToken {
    /// The term of the primary that acknowledged the write; 0 when the minting worker did not
    /// know it.
    pub term: u64,
    pub replication_index: u64,
}

/// What a read must reflect for this client: an answer at `index` or later, from a node whose
/// history contains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub index: u64,
    /// The term that wrote `index` in the current history, when known. A node reporting an
    /// older term follows a history that left the current one before `index`: its index says
    /// nothing about the client's write.
    pub term: Option<u64>,
}

impl Requirement {
    /// Whether a node that answered at `index` under `term` (either may be unknown) reflects
    /// this requirement. An answer without a term is taken as current: Turso and a plain
    /// libSQL server report none, and their primary never changes under the worker.
    pub fn met_by(&self, index: Option<u64>, term: Option<u64>) -> bool {
        let index_ok = index.unwrap_or(0) >= self.index;
        let term_ok = match (self.term, term) {
            (Some(required), Some(answered)) => answered >= required,
            _ => true,
        };
        index_ok && term_ok
    }
}

/// The MAC binds the token to its purpose (the prefix) and its database (`audience`): ASVS 5.0
/// 9.1.1 (verified before its content is used), 9.2.2 (only a read-your-writes token of this
/// version is accepted as one) and 9.2.3 (only for the database it was issued for).
fn mac(key: &[u8], audience: &str, term: u64, index: u64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(format!("edgestack-consistency-v{VERSION}\n{audience}\n{term}\n{index}").as_bytes());
    Some(mac)
}

impl ConsistencyToken {
    pub fn encode(&self, key: &[u8], audience: &str) -> Option<String> {
        let signature = mac(key, audience, self.term, self.replication_index)?.finalize().into_bytes();
        Some(format!("{VERSION}.{}.{}.{}", self.term, self.replication_index, URL_SAFE_NO_PAD.encode(signature)))
    }

    /// `None` for anything not signed with `key` for `audience` (constant-time check): another
    /// database's token, a v1 token, a forged or altered one.
    pub fn decode(value: &str, key: &[u8], audience: &str) -> Option<Self> {
        let mut parts = value.split('.');
        let (version, term, index, signature) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != VERSION || parts.next().is_some() {
            return None;
        }
        let (term, replication_index): (u64, u64) = (term.parse().ok()?, index.parse().ok()?);
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        mac(key, audience, term, replication_index)?.verify_slice(&signature).ok()?;
        Some(Self { term, replication_index })
    }

    /// The newest validly signed token among a request's cookie values: several can arrive
    /// (repeated `Cookie` fields), and the newest is the one every read must honour.
    pub fn newest<'a>(values: impl Iterator<Item = &'a str>, key: &[u8], audience: &str) -> Option<Self> {
        values.filter_map(|value| Self::decode(value, key, audience)).max()
    }

    pub fn set_cookie(&self, cookie_name: &str, key: &[u8], audience: &str) -> Option<String> {
        Some(format!(
            "{cookie_name}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={MAX_AGE_SECONDS}",
            self.encode(key, audience)?
        ))
    }

    /// What this token asks of a read, given the history the isolate knows (`None`: no primary
    /// record read):
    ///
    /// | token | requirement |
    /// |---|---|
    /// | term unknown (0) | its index, written by whichever term holds it in the history |
    /// | the current term, or newer than the isolate knows | its index |
    /// | an older term, index within what that term kept | its index |
    /// | an older term, index past where the history moved on | only the end of its term: the rest was lost with the old primary |
    pub fn requirement(&self, history: Option<History<'_>>) -> Requirement {
        let Some(history) = history else {
            return Requirement { index: self.replication_index, term: (self.term > 0).then_some(self.term) };
        };
        if self.term > history.term {
            return Requirement { index: self.replication_index, term: Some(self.term) };
        }
        let index = match history.end_of(self.term) {
            Some(end) if self.term > 0 => self.replication_index.min(end),
            _ => self.replication_index,
        };
        Requirement { index, term: Some(history.term_of(index)) }
    }

    /// Whether the requirement had to stop short of the token: the token came from an older
    /// term whose last writes the current history does not hold.
    pub fn outlived_its_term(&self, history: Option<History<'_>>) -> bool {
        self.requirement(history).index < self.replication_index
    }
}

#[cfg(test)]
mod tests {
    use super::super::primary::TermStart;
    use super::*;

    fn token(term: u64, replication_index: u64) -> ConsistencyToken {
        ConsistencyToken { term, replication_index }
    }

    #[test]
    fn round_trips_and_refuses_tampering() {
        let key = b"test key";
        let encoded = token(2, 42).encode(key, "notes").unwrap();
        assert!(encoded.starts_with("2.2.42."), "{encoded}");
        assert_eq!(ConsistencyToken::decode(&encoded, key, "notes"), Some(token(2, 42)));
        assert_eq!(ConsistencyToken::decode(&encoded, b"other key", "notes"), None);
        for forged in [encoded.replacen(".42.", ".4200.", 1), encoded.replacen("2.2.", "2.3.", 1)] {
            assert_eq!(ConsistencyToken::decode(&forged, key, "notes"), None, "{forged}");
        }
        for garbage in
            ["", "42", "2.1.42", "2.1.42.", "x.y.z.w", "2.1.18446744073709551616.AAAA", &format!("{encoded}.x")]
        {
            assert_eq!(ConsistencyToken::decode(garbage, key, "notes"), None, "{garbage}");
        }
    }

    /// Issue #17: the accounts database's token replayed as the notes cookie.
    #[test]
    fn a_token_is_worth_nothing_for_another_database_and_v1_tokens_are_refused() {
        let key = b"one key for every service";
        let accounts = token(0, 9_000).encode(key, "accounts").unwrap();
        assert_eq!(ConsistencyToken::decode(&accounts, key, "notes"), None);
        assert_eq!(ConsistencyToken::decode(&accounts, key, "accounts"), Some(token(0, 9_000)));
        // A v1 token, as the previous release signed it: the index and a MAC over it alone.
        let mut v1 = Hmac::<Sha256>::new_from_slice(key).unwrap();
        v1.update(b"edgestack-consistency-v1:9000");
        let v1 = format!("9000.{}", URL_SAFE_NO_PAD.encode(v1.finalize().into_bytes()));
        assert_eq!(ConsistencyToken::decode(&v1, key, "notes"), None);
        assert_eq!(ConsistencyToken::decode(&v1, key, "accounts"), None);
    }

    #[test]
    fn cookie_round_trip() {
        let key = b"k";
        let set = token(1, 7).set_cookie("c_notes", key, "notes").unwrap();
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        let older = token(1, 3).encode(key, "notes").unwrap();
        let other_database = token(1, 99).encode(key, "accounts").unwrap();
        let values = [older.as_str(), value, "garbage", other_database.as_str()];
        assert_eq!(ConsistencyToken::newest(values.into_iter(), key, "notes"), Some(token(1, 7)));
        assert_eq!(ConsistencyToken::newest([value].into_iter(), b"another key", "notes"), None);
        assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("Max-Age=300"));
    }

    fn check(token: ConsistencyToken, history: Option<History<'_>>, index: u64, term: Option<u64>) {
        assert_eq!(token.requirement(history), Requirement { index, term }, "{token:?} in {history:?}");
    }

    #[test]
    fn after_a_failover_a_token_asks_only_for_what_its_term_kept() {
        // Term 2 began at index 40: term 1's indexes 41.. were lost with the old primary.
        let terms = [TermStart { term: 1, from_index: 0 }, TermStart { term: 2, from_index: 40 }];
        let history = Some(History { term: 2, terms: &terms });
        check(token(1, 30), history, 30, Some(1));
        check(token(1, 50), history, 40, Some(1));
        check(token(2, 50), history, 50, Some(2));
        check(token(0, 30), history, 30, Some(1));
        check(token(0, 50), history, 50, Some(2));
        check(token(3, 50), history, 50, Some(3));
        check(token(0, 50), None, 50, None);
        check(token(2, 50), None, 50, Some(2));
        assert!(token(1, 50).outlived_its_term(history) && !token(1, 40).outlived_its_term(history));
    }

    #[test]
    fn an_answer_meets_a_requirement_at_its_index_from_a_node_of_that_history() {
        let required = Requirement { index: 50, term: Some(2) };
        assert!(required.met_by(Some(50), Some(2)));
        assert!(required.met_by(Some(60), None), "no term reported: taken as current");
        assert!(!required.met_by(Some(49), Some(2)));
        assert!(!required.met_by(None, None));
        assert!(!required.met_by(Some(60), Some(1)), "index 60 of term 1's lost branch");
        assert!(Requirement { index: 50, term: None }.met_by(Some(50), Some(1)));
    }
}
