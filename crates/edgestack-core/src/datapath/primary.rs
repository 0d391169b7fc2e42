//! Where the primary is after a failover: the **primary record** that whoever promotes a
//! replica writes to Workers KV (`v1/primary/<database>`, docs/failover.md), and what an
//! isolate remembers of it.
//!
//! The worker reads the record only when the primary fails (unreachable, 5xx, fenced) or a
//! client presents a token of a newer term than the isolate knows — never while nothing fails —
//! and at most once per [`RECHECK_INTERVAL_MS`] per isolate. Without a record the configured
//! `LIBSQL_PRIMARY_URL` is the primary and its term is unknown: Turso moves its primary behind
//! one URL and never needs a record.

use serde::{Deserialize, Deserializer, Serialize};

use super::consistency::ConsistencyToken;

/// An isolate asks KV for the record at most this often: a failing primary costs one KV read
/// per second per isolate, not one per request, and a record written by the operator is seen
/// within this interval (plus KV's propagation to other locations).
pub const RECHECK_INTERVAL_MS: f64 = 1_000.0;

/// The record's KV key for `database` (`main`, `accounts`, `notes`).
pub fn record_key(database: &str) -> String {
    format!("v1/primary/{database}")
}

/// Where a term's entries begin: the index its primary was promoted at (devdb's
/// `GET /_devdb/primary` `terms`, where `from_index` is a string; a number is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermStart {
    pub term: u64,
    #[serde(deserialize_with = "number_or_string")]
    pub from_index: u64,
}

fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(deserializer)? {
        Either::Number(value) => Ok(value),
        Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// `{"url", "term", "terms": [{"term", "from_index"}]}`: the primary's Hrana URL, its term, and
/// the history of terms (oldest first, the last one `term`'s own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryRecord {
    pub url: String,
    pub term: u64,
    pub terms: Vec<TermStart>,
}

impl PrimaryRecord {
    /// The record in `bytes` if it is well formed: an http(s) URL, a term of at least 1, and a
    /// history in order that ends with that term. Anything else is ignored (and logged by the
    /// caller): a broken record must not move the worker's writes anywhere.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let record: Self = serde_json::from_slice(bytes).ok()?;
        let url_ok = (record.url.starts_with("https://") || record.url.starts_with("http://"))
            && record.url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
        let ordered =
            record.terms.windows(2).all(|pair| pair[0].term < pair[1].term && pair[0].from_index <= pair[1].from_index);
        let ends_with_term = record.terms.last().is_some_and(|last| last.term == record.term);
        (url_ok && record.term >= 1 && ordered && ends_with_term)
            .then(|| Self { url: record.url.trim_end_matches('/').to_string(), ..record })
    }

    pub fn encode(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn history(&self) -> History<'_> {
        History { term: self.term, terms: &self.terms }
    }
}

/// A database's history of terms, as the primary record states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History<'a> {
    /// The current term.
    pub term: u64,
    pub terms: &'a [TermStart],
}

impl History<'_> {
    /// The last index `term` wrote in this history — where the next term began — or `None`
    /// when `term` is the current one (or unknown here).
    pub fn end_of(&self, term: u64) -> Option<u64> {
        self.terms.iter().find(|start| start.term > term).map(|start| start.from_index)
    }

    /// Whether rows a node of `term` read at `index` are of this history: read in its current
    /// term (or a later one not known here), or in an earlier term it names, at an index that
    /// term kept. Past where their term ended they hold writes the failover lost; of a term the
    /// history does not name (a branch a later promotion left behind), where they part from it
    /// is not known.
    pub fn holds_rows_of(&self, term: u64, index: u64) -> bool {
        let named = self.terms.iter().any(|start| start.term == term);
        term >= self.term || (named && self.end_of(term).is_none_or(|end| index <= end))
    }

    /// The term that wrote `index` in this history: term *k* holds the indexes after its
    /// `from_index` up to the next term's.
    pub fn term_of(&self, index: u64) -> u64 {
        let first = self.terms.first().map_or(self.term, |start| start.term);
        self.terms.iter().rev().find(|start| start.from_index < index).map_or(first, |start| start.term)
    }
}

/// What an isolate knows of its database's primary, kept in isolate memory.
#[derive(Debug, Default)]
pub struct PrimaryState {
    /// The newest record read from KV; `None` until one has been read (or when none exists).
    record: Option<PrimaryRecord>,
    /// When KV was last asked, whatever it answered.
    checked_at_ms: Option<f64>,
    /// The newest write this isolate has seen the primary acknowledge, and when.
    newest_write: Option<(ConsistencyToken, f64)>,
}

impl PrimaryState {
    pub fn record(&self) -> Option<&PrimaryRecord> {
        self.record.as_ref()
    }

    /// The term this isolate knows the primary to be at (`None`: no record read).
    pub fn term(&self) -> Option<u64> {
        self.record.as_ref().map(|record| record.term)
    }

    /// The newest term this isolate has reason to believe in: the record's, or 1 — every
    /// history begins at term 1, and without a record the configured primary is taken to be
    /// that one. A token of a newer term than this is news of a failover.
    pub fn believed_term(&self) -> u64 {
        self.term().unwrap_or(1)
    }

    /// Whether KV may be asked again at `now_ms`.
    pub fn may_check(&self, now_ms: f64) -> bool {
        self.checked_at_ms.is_none_or(|at| now_ms - at >= RECHECK_INTERVAL_MS)
    }

    /// Claims the check at `now_ms` (before the KV read, so concurrent requests of the isolate
    /// do not all read it); `false` if another check is too recent.
    pub fn claim_check(&mut self, now_ms: f64) -> bool {
        let may = self.may_check(now_ms);
        if may {
            self.checked_at_ms = Some(now_ms);
        }
        may
    }

    /// The read-your-writes token for a write the primary acknowledged as `written` at
    /// `now_ms`: [`Self::covering`] it, after counting it among the isolate's writes.
    pub fn token_for_write(&mut self, written: ConsistencyToken, now_ms: f64, window_ms: f64) -> ConsistencyToken {
        let token = self.covering(written, now_ms, window_ms);
        if self.newest_write.is_none_or(|(newest, at)| now_ms - at > window_ms || written >= newest) {
            self.newest_write = Some((written, now_ms));
        }
        token
    }

    /// `token`, raised to the newest write this isolate saw the primary acknowledge within the
    /// last `window_ms` — what every read-your-writes cookie an answer sets must cover.
    ///
    /// A browser keeps the `Set-Cookie` of whichever answer reaches it last. When one client
    /// has two changes under way, the one that reached the primary first (the lower index) can
    /// answer last, and its cookie would replace the other's: the client's next read could come
    /// from a replica that has the first change and not the second. The same holds for a read
    /// that corrects a client's cookie while a change is under way. No request waits on the
    /// primary longer than `window_ms` (its deadline), so a write this isolate saw acknowledged
    /// within it may belong to a request still under way. Tokens order by term, then index: a
    /// newer term's token asks for that term's history, which holds whatever survived of the
    /// older one. Raising a token past another client's write only sends a read to the primary
    /// sooner; the window keeps a primary whose index went back (a restore) from raising tokens
    /// for long.
    ///
    /// A write the known history or the primary itself has since lost never raises a token:
    /// see [`Self::forget_writes_past`].
    pub fn covering(&self, token: ConsistencyToken, now_ms: f64, window_ms: f64) -> ConsistencyToken {
        let history = self.record.as_ref().map(PrimaryRecord::history);
        match self.newest_write {
            Some((newest, at)) if now_ms - at <= window_ms && !newest.outlived_its_term(history) => token.max(newest),
            _ => token,
        }
    }

    /// The primary answered at `answered`: a write of the same term past it was lost (a
    /// restore), and no token is raised to it any more.
    pub fn forget_writes_past(&mut self, answered: ConsistencyToken) {
        if self.newest_write.is_some_and(|(newest, _)| newest.term == answered.term && newest > answered) {
            self.newest_write = None;
        }
    }

    /// Takes what KV answered. A record replaces the known one only at the same or a higher
    /// term: KV is eventually consistent, and an older copy must never move the worker back to
    /// a former primary. Returns whether the primary changed (URL or term).
    pub fn update(&mut self, found: Option<PrimaryRecord>) -> bool {
        let Some(found) = found else { return false };
        let newer = self.record.as_ref().is_none_or(|known| found.term >= known.term && found != *known);
        if newer {
            self.record = Some(found);
        }
        newer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Option<PrimaryRecord> {
        PrimaryRecord::parse(json.as_bytes())
    }

    #[test]
    fn takes_devdb_discovery_terms_and_refuses_malformed_records() {
        let parsed = record(
            r#"{"url": "http://127.0.0.1:9/", "term": 2, "terms": [{"term": 1, "from_index": "0"}, {"term": 2, "from_index": 17}], "role": "primary"}"#,
        )
        .unwrap();
        assert_eq!(parsed.url, "http://127.0.0.1:9");
        assert_eq!(parsed.terms, [TermStart { term: 1, from_index: 0 }, TermStart { term: 2, from_index: 17 }]);
        assert_eq!(PrimaryRecord::parse(parsed.encode().as_bytes()), Some(parsed));
        for bad in [
            "",
            "{}",
            r#"{"url": "ftp://x", "term": 1, "terms": [{"term": 1, "from_index": 0}]}"#,
            r#"{"url": "http://", "term": 1, "terms": [{"term": 1, "from_index": 0}]}"#,
            r#"{"url": "http://x", "term": 0, "terms": [{"term": 0, "from_index": 0}]}"#,
            r#"{"url": "http://x", "term": 3, "terms": [{"term": 1, "from_index": 0}, {"term": 2, "from_index": 5}]}"#,
            r#"{"url": "http://x", "term": 2, "terms": [{"term": 2, "from_index": 5}, {"term": 1, "from_index": 0}]}"#,
            r#"{"url": "http://x", "term": 2, "terms": [{"term": 1, "from_index": 9}, {"term": 2, "from_index": 5}]}"#,
        ] {
            assert_eq!(record(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_history_names_the_term_of_each_index_and_where_each_term_ended() {
        let terms = [TermStart { term: 1, from_index: 0 }, TermStart { term: 3, from_index: 10 }];
        let history = History { term: 3, terms: &terms };
        assert_eq!((history.term_of(1), history.term_of(10), history.term_of(11)), (1, 1, 3));
        assert_eq!(history.end_of(1), Some(10));
        assert_eq!(history.end_of(2), Some(10), "a term this history never had ended where the next began");
        assert_eq!(history.end_of(3), None);
    }

    #[test]
    fn a_token_covers_the_isolates_newer_writes_within_the_window() {
        let token = |term, replication_index| ConsistencyToken { term, replication_index };
        let mut state = PrimaryState::default();
        assert_eq!(state.token_for_write(token(1, 10), 0.0, 5_000.0), token(1, 10));
        // Reached the primary before index 10, answered after it.
        assert_eq!(state.token_for_write(token(1, 9), 4_000.0, 5_000.0), token(1, 10));
        assert_eq!(state.token_for_write(token(1, 12), 4_100.0, 5_000.0), token(1, 12));
        assert_eq!(state.token_for_write(token(1, 11), 9_100.0, 5_000.0), token(1, 12), "4 900 ms after index 12");
        assert_eq!(state.token_for_write(token(1, 3), 9_200.0, 5_000.0), token(1, 3), "past the window: not raised");
        assert_eq!(
            state.token_for_write(token(1, 4), 9_300.0, 5_000.0),
            token(1, 4),
            "the expired index 12 is forgotten"
        );
        // After a failover the newer term's token asks for more, whatever the indexes.
        assert_eq!(state.token_for_write(token(2, 2), 9_400.0, 5_000.0), token(2, 2));
        assert_eq!(state.token_for_write(token(1, 8), 9_500.0, 5_000.0), token(2, 2));
        assert_eq!(state.token_for_write(token(2, 1), 9_600.0, 5_000.0), token(2, 2), "term 2's newest is kept");
        // A read that corrects a cookie covers the writes too; it records nothing itself.
        assert_eq!(state.covering(token(1, 7), 9_700.0, 5_000.0), token(2, 2));
        assert_eq!(state.covering(token(1, 7), 14_401.0, 5_000.0), token(1, 7), "past the window");
        // The primary went back to index 1 of term 2 (a restore): its index 2 was lost.
        state.forget_writes_past(token(2, 1));
        assert_eq!(state.covering(token(2, 1), 9_800.0, 5_000.0), token(2, 1));
    }

    #[test]
    fn a_write_lost_in_a_failover_raises_no_token() {
        let token = |term, replication_index| ConsistencyToken { term, replication_index };
        let mut state = PrimaryState::default();
        assert_eq!(state.token_for_write(token(2, 24), 0.0, 5_000.0), token(2, 24));
        let failover = r#"{"url": "http://x", "term": 3, "terms": [{"term": 1, "from_index": 0}, {"term": 2, "from_index": 10}, {"term": 3, "from_index": 22}]}"#;
        assert!(state.update(PrimaryRecord::parse(failover.as_bytes())));
        assert_eq!(state.covering(token(2, 22), 100.0, 5_000.0), token(2, 22), "term 2 ended at 22");
        assert_eq!(state.token_for_write(token(3, 23), 200.0, 5_000.0), token(3, 23));
    }

    #[test]
    fn an_isolate_checks_at_most_once_per_interval_and_never_moves_back_a_term() {
        let mut state = PrimaryState::default();
        assert!(state.claim_check(0.0));
        assert!(!state.claim_check(RECHECK_INTERVAL_MS - 1.0));
        let term = |term: u64, url: &str| PrimaryRecord {
            url: url.into(),
            term,
            terms: vec![TermStart { term, from_index: 0 }],
        };
        assert!(!state.update(None));
        assert!(state.update(Some(term(2, "http://b"))));
        assert!(!state.update(Some(term(2, "http://b"))), "the same record changes nothing");
        assert!(!state.update(Some(term(1, "http://a"))), "an older copy from another location");
        assert!(state.update(Some(term(2, "http://b2"))), "an operator's correction at the same term");
        assert_eq!((state.term(), state.record().map(|r| r.url.as_str())), (Some(2), Some("http://b2")));
        assert!(state.claim_check(RECHECK_INTERVAL_MS));
    }
}
