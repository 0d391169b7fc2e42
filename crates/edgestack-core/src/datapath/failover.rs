//! What a database endpoint's HTTP answer means for the data path, and which failures of the
//! primary an operation may be retried after, on the primary the record names.
//!
//! The rule is about what the failed attempt may have done. A read changes nothing, so it is
//! always safe to send again. A write is one `BEGIN IMMEDIATE … COMMIT` batch; it is sent again
//! only when the old node said it ran none of it — devdb's 503 `PRIMARY_FENCED` (a fenced
//! former primary refuses every request whole, and no write commits after the fence), or the
//! same code on a statement of a write that was rolled back because the fence came while it
//! ran. Anything else — no answer in time, a connection lost, a 5xx — may come after a commit
//! the old primary acknowledged to nobody: sending it again could apply it twice (a note
//! created twice, a counter bumped twice), so the client gets 503 + `Retry-After` and decides,
//! and the isolate's next request goes to the new primary. One more answer is a failure: a node
//! that answers as the primary under a term older than the client's last write (a former
//! primary not fenced yet). What it ran is on a branch the current history never holds, so an
//! operation it answered may go to the record's primary like one it refused.

pub use crate::db::PRIMARY_FENCED;
use crate::db::{DbError, PipelineKind};

/// What an endpoint answered to `POST /v3/pipeline`: any status, its body, and the term of the
/// node that answered when it reports one (devdb's `x-devdb-term`; Turso sends none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HranaAnswer {
    pub status: u16,
    pub body: Vec<u8>,
    pub term: Option<u64>,
}

/// Why an endpoint gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It refused the whole request because it is not the primary any more: nothing ran.
    NotPrimary(String),
    /// It answered as the primary under a term older than the client's last write: a former
    /// primary the promotion has not fenced yet. Its rows lack that write, and whatever it ran
    /// is on a branch every node of the newer term refuses (docs/failover.md), so it counts as
    /// not run.
    Superseded(String),
    /// Unreachable, no answer in time, overloaded (429) or a 5xx: the request may have run.
    Unavailable(String),
    /// An answer that is no Hrana response (a 4xx: wrong URL, wrong token): a misconfiguration,
    /// not a failover.
    Protocol(String),
}

impl Failure {
    /// What a handler sees: 503 with `Retry-After` for the first two, 502 for the last.
    pub fn into_db_error(self) -> DbError {
        match self {
            Self::NotPrimary(why) | Self::Superseded(why) | Self::Unavailable(why) => DbError::Unavailable(why),
            Self::Protocol(why) => DbError::Protocol(why),
        }
    }

    /// A transport error from the platform (never reached, timed out, lost on the way).
    pub fn of_transport(error: DbError) -> Self {
        match error {
            DbError::Unavailable(why) => Self::Unavailable(why),
            other => Self::Protocol(other.to_string()),
        }
    }

    /// A write's statement refused because the node was fenced while the write ran (its
    /// transaction was rolled back): nothing of it committed.
    pub fn of_statement(error: &DbError) -> Option<Self> {
        match error {
            DbError::Statement { error, .. } if error.is_primary_fenced() => {
                Some(Self::NotPrimary(format!("fenced while the write ran: {}", error.message)))
            }
            _ => None,
        }
    }

    /// Whether an operation of `kind` that failed this way may be sent to another primary.
    pub fn may_retry(&self, kind: PipelineKind) -> bool {
        match self {
            Self::Protocol(_) => false,
            Self::NotPrimary(_) | Self::Superseded(_) => true,
            Self::Unavailable(_) => kind != PipelineKind::Write,
        }
    }

    /// Whether this failure is the primary failing (worth looking for a new one).
    pub fn is_primary_failure(&self) -> bool {
        !matches!(self, Self::Protocol(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotPrimary(why) => write!(f, "not the primary: {why}"),
            Self::Superseded(why) => write!(f, "a former primary: {why}"),
            Self::Unavailable(why) | Self::Protocol(why) => f.write_str(why),
        }
    }
}

/// The body of a 2xx answer; anything else as a [`Failure`]. A refusal's JSON body
/// (`{"message", "code"}`, as devdb and sqld send it) says which failure it is.
pub fn check_answer(answer: HranaAnswer) -> Result<HranaAnswer, Failure> {
    let status = answer.status;
    if (200..300).contains(&status) {
        return Ok(answer);
    }
    let code = refusal_code(&answer.body);
    let excerpt: String = String::from_utf8_lossy(&answer.body).chars().take(200).collect();
    match (status, code.as_deref()) {
        (503, Some(PRIMARY_FENCED)) => Err(Failure::NotPrimary(format!("HTTP 503: {excerpt}"))),
        // 429: sqld's answer when it is at its limit of concurrent requests or could not get a
        // connection in time (`{"error": "Too many concurrent requests"}`): nothing ran, and
        // the server is overloaded, not misconfigured.
        (429 | 500..=599, _) => Err(Failure::Unavailable(format!("HTTP {status}: {excerpt}"))),
        _ => Err(Failure::Protocol(format!("HTTP {status}: {excerpt}"))),
    }
}

fn refusal_code(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Refusal {
        code: String,
    }
    serde_json::from_slice::<Refusal>(body).ok().map(|refusal| refusal.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StatementError;

    fn answer(status: u16, body: &str) -> HranaAnswer {
        HranaAnswer { status, body: body.as_bytes().to_vec(), term: None }
    }

    #[test]
    fn a_fenced_refusal_is_not_primary_other_5xx_may_have_run_and_4xx_is_a_misconfiguration() {
        assert!(check_answer(answer(200, "{}")).is_ok());
        let fenced =
            r#"{"message": "devdb is fenced: …", "code": "PRIMARY_FENCED", "primary": {"url": "http://b", "term": 2}}"#;
        assert!(matches!(check_answer(answer(503, fenced)), Err(Failure::NotPrimary(_))));
        for other in [answer(503, r#"{"code": "FAULT_INJECTED", "message": "m"}"#), answer(502, "<html>")] {
            assert!(matches!(check_answer(other), Err(Failure::Unavailable(_))));
        }
        let unauthorized = check_answer(answer(401, r#"{"code": "UNAUTHORIZED"}"#)).unwrap_err();
        assert!(matches!(unauthorized, Failure::Protocol(ref why) if why.starts_with("HTTP 401")));
        assert!(!unauthorized.is_primary_failure());
    }

    /// sqld answers 429 when it is at its limit of concurrent requests (`TooManyRequests`) or
    /// no connection came in time (`DbCreateTimeout`): an overload to retry after, like devdb's
    /// 503 `TOO_MANY_STREAMS` — a review found it a 502 "unexpected answer" without `Retry-After`.
    #[test]
    fn an_overloaded_sqld_429_is_unavailable() {
        for body in [r#"{"error": "Too many concurrent requests"}"#, "Too Many Requests"] {
            let overloaded = check_answer(answer(429, body)).unwrap_err();
            assert!(matches!(overloaded, Failure::Unavailable(ref why) if why.starts_with("HTTP 429")), "{body}");
            assert!(matches!(overloaded.into_db_error(), DbError::Unavailable(_)));
        }
    }

    #[test]
    fn reads_are_retried_after_any_primary_failure_writes_only_when_nothing_ran() {
        let (not_primary, unavailable) = (Failure::NotPrimary("x".into()), Failure::Unavailable("x".into()));
        for kind in [PipelineKind::Read, PipelineKind::AuthoritativeRead] {
            assert!(not_primary.may_retry(kind) && unavailable.may_retry(kind));
        }
        assert!(not_primary.may_retry(PipelineKind::Write));
        let superseded = Failure::Superseded("answered under term 1".into());
        assert!(
            superseded.may_retry(PipelineKind::Write),
            "what it ran is on a branch no node of the newer term keeps"
        );
        assert!(superseded.is_primary_failure());
        assert!(matches!(superseded.into_db_error(), DbError::Unavailable(_)));
        assert!(!unavailable.may_retry(PipelineKind::Write), "it may have committed");
        assert!(!Failure::Protocol("x".into()).may_retry(PipelineKind::Read));
        let fenced_statement = DbError::Statement {
            index: 0,
            error: StatementError { message: "devdb is fenced".into(), code: PRIMARY_FENCED.into() },
        };
        assert!(matches!(Failure::of_statement(&fenced_statement), Some(Failure::NotPrimary(_))));
        let unique = DbError::Statement {
            index: 0,
            error: StatementError { message: "UNIQUE".into(), code: "SQLITE_CONSTRAINT".into() },
        };
        assert_eq!(Failure::of_statement(&unique), None);
    }
}
