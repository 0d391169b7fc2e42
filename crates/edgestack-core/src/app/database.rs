//! How handlers reach the database: one pipeline per call. Writes and authoritative reads go
//! to the primary; other reads go through the read plan (nearest replica first), falling back on a failed, slow or lagging
//! replica; every round trip is recorded for `Server-Timing`, and failures are [`DbError`]s,
//! which `?` turns into API errors (503 with `Retry-After` when no database can answer — never
//! a hang or a bare 500; see `error.rs`).
//!
//! After a failover (docs/failover.md): when the primary fails, the isolate reads the primary
//! record from KV (at most once a second) and, if it names another primary, sends the
//! operation there once — a read always, a write only when the old node ran none of it
//! (`datapath::failover`). While nothing fails nothing here reads KV or allocates beyond what
//! a request did before.

use std::cell::{Cell, RefCell};

use crate::cache::CacheVersion;
use crate::config::{DataPathConfig, DatabaseConfig};
use crate::datapath::failover::check_answer;
use crate::datapath::primary::record_key;
use crate::datapath::{
    ConsistencyToken, Endpoint, Failure, HranaAnswer, PrimaryRecord, Requirement, Role, Topology, round_trip_ms,
};
use crate::db::{DbError, Pipeline, PipelineKind, PipelineOutcome};
use crate::region::RegionName;

use super::{ApiRequest, Platform, RequestReport};

/// The reader's region, for the read plan: found only when replicas make it matter.
#[derive(Clone, Copy)]
pub enum ReaderRegion<'a> {
    Known(&'a RegionName),
    Of(&'a ApiRequest),
}

/// While the primary is down and no replica has the client's writes yet, how long a read waits
/// before it asks the replicas (and the record) again.
pub const WAIT_STEP_MS: u32 = 250;

pub struct Database<'a, P: Platform> {
    platform: &'a P,
    config: &'a DatabaseConfig,
    data_path: &'a DataPathConfig,
    topology: Topology,
    region: ReaderRegion<'a>,
    /// What reads must reflect for this client; lowered when the primary itself answers below
    /// it (the token is not believed beyond what the primary has).
    requirement: Cell<Option<Requirement>>,
    report: &'a RefCell<RequestReport>,
}

/// Why one attempt on one endpoint produced no outcome.
enum Missed {
    /// The endpoint failed: another one may answer.
    Endpoint(Failure),
    /// The endpoint answered, and the answer is the error (a statement refused).
    Answer(DbError),
}

impl Missed {
    fn into_db_error(self) -> DbError {
        match self {
            Self::Endpoint(failure) => failure.into_db_error(),
            Self::Answer(error) => error,
        }
    }
}

impl<'a, P: Platform> Database<'a, P> {
    pub fn new(
        platform: &'a P,
        config: &'a DatabaseConfig,
        data_path: &'a DataPathConfig,
        region: ReaderRegion<'a>,
        requirement: Option<Requirement>,
        report: &'a RefCell<RequestReport>,
    ) -> Self {
        let mut topology = data_path.topology(config);
        // Only after a failover does the isolate hold a record; until then the configured
        // primary is used as it is.
        if let Some(record) = platform.isolate().primary.borrow().record() {
            topology.primary = primary_endpoint(data_path, record);
            // The promoted replica is the primary now, not a replica beside it.
            topology.replicas.retain(|_, replica| replica.url != record.url);
        }
        Self { platform, config, data_path, topology, region, requirement: Cell::new(requirement), report }
    }

    /// One round trip (two when a replica turns out to be behind the client's own writes, or
    /// the primary failed and the record names a new one).
    /// Statement failures of a read come back per statement in the outcome; a failed write
    /// statement is `DbError::Statement` (the transaction was rolled back).
    pub async fn run(&self, pipeline: &Pipeline) -> Result<PipelineOutcome, DbError> {
        match pipeline.kind {
            PipelineKind::Write | PipelineKind::AuthoritativeRead => self.on_primary(pipeline).await,
            PipelineKind::Read => self.read(pipeline).await,
        }
    }

    /// Whether `pipeline` is sent with the index probe: when the answer's index must vouch for
    /// its rows — a read the cache keeps, or a read a replica may answer for a client whose
    /// writes it must show (`serves_read`). Elsewhere the probe would only cost time: a
    /// primary's answer is the newest there is, and its index is used only to cap a token. The
    /// same for every attempt of one request: a requirement is only ever lowered, never dropped.
    fn probes(&self, pipeline: &Pipeline) -> bool {
        pipeline.kind == PipelineKind::Read
            && (pipeline.is_kept() || (self.requirement.get().is_some() && !self.topology.replicas.is_empty()))
    }

    fn request_body(&self, pipeline: &Pipeline) -> Result<Vec<u8>, DbError> {
        if self.probes(pipeline) { pipeline.request_body_with_probe() } else { pipeline.request_body() }
    }

    /// The smallest replication index a read must reflect for this client.
    pub fn required_index(&self) -> Option<u64> {
        self.requirement.get().map(|requirement| requirement.index)
    }

    async fn on_primary(&self, pipeline: &Pipeline) -> Result<PipelineOutcome, DbError> {
        let primary = &self.topology.primary;
        let deadline = self.data_path.primary_deadline_ms;
        let missed = match self.attempt_primary(primary, pipeline, self.request_body(pipeline)?, deadline).await {
            Ok(answered) => return Ok(self.take_primary_answer(pipeline, answered)),
            Err(missed) => missed,
        };
        let failure = match missed {
            Missed::Endpoint(failure) if failure.is_primary_failure() => failure,
            other => return Err(other.into_db_error()),
        };
        let Some(replacement) = self.replacement_for(primary).await else {
            return Err(failure.into_db_error());
        };
        if !failure.may_retry(pipeline.kind) {
            self.platform.log(&format!(
                "primary {} failed ({failure}); the write may have run there, so it is not sent to {}",
                primary.url, replacement.url
            ));
            return Err(failure.into_db_error());
        }
        self.platform.log(&format!("primary {} failed ({failure}); sending to {}", primary.url, replacement.url));
        self.report.borrow_mut().fallbacks.push((primary.label(), "failed"));
        match self.attempt_primary(&replacement, pipeline, self.request_body(pipeline)?, deadline).await {
            Ok(answered) => Ok(self.take_primary_answer(pipeline, answered)),
            Err(missed) => Err(missed.into_db_error()),
        }
    }

    /// An answer of the primary: a write's index becomes the client's new token (raised to
    /// cover this isolate's overlapping writes, [`token_for_write`](crate::datapath::primary::PrimaryState::token_for_write)); an answer
    /// below the client's token caps it.
    fn take_primary_answer(
        &self,
        pipeline: &Pipeline,
        (outcome, term): (PipelineOutcome, Option<u64>),
    ) -> PipelineOutcome {
        let Some(index) = outcome.replication_index else { return outcome };
        if pipeline.kind == PipelineKind::Write {
            let mut primary = self.platform.isolate().primary.borrow_mut();
            let term = term.or_else(|| primary.term());
            let written = ConsistencyToken { term: term.unwrap_or(0), replication_index: index };
            let token = primary.token_for_write(written, self.platform.now_ms(), self.primary_deadline_ms());
            let mut report = self.report.borrow_mut();
            let version = CacheVersion::new(term, index);
            report.written = Some(report.written.map_or(version, |written| written.join(version)));
            report.token = Some(token);
        } else {
            self.cap_at_primary(index, term);
        }
        outcome
    }

    /// The primary answered at `index`: a token above it is not believed beyond it (ASVS 5.0
    /// 2.2.1, input checked against the logical limits the server knows — nothing the primary
    /// has not written can be waited for), and the client's cookie is corrected. Legitimate
    /// tokens are never above the primary; one is after a restore or a failover that lost
    /// writes, or when it was minted for another database.
    fn cap_at_primary(&self, index: u64, term: Option<u64>) {
        let Some(requirement) = self.requirement.get().filter(|requirement| index < requirement.index) else {
            return;
        };
        self.platform.log(&format!(
            "read-your-writes token at index {} is ahead of the primary ({index}): believed only up to {index}",
            requirement.index
        ));
        let mut primary = self.platform.isolate().primary.borrow_mut();
        let term = term.or(primary.term());
        self.requirement.set(Some(Requirement { index, term }));
        let capped = ConsistencyToken { term: term.unwrap_or(0), replication_index: index };
        primary.forget_writes_past(capped);
        let mut report = self.report.borrow_mut();
        if report.token.is_none() {
            report.token = Some(primary.covering(capped, self.platform.now_ms(), self.primary_deadline_ms()));
        }
    }

    /// How long a request can wait on the primary: the window within which an acknowledged
    /// write may belong to a request still under way.
    fn primary_deadline_ms(&self) -> f64 {
        f64::from(self.data_path.primary_deadline_ms)
    }

    async fn read(&self, pipeline: &Pipeline) -> Result<PipelineOutcome, DbError> {
        let body = self.request_body(pipeline)?;
        // Without replicas every read goes to the primary, wherever the reader is.
        let (plan, region): (Vec<Endpoint>, Option<RegionName>) = if self.topology.replicas.is_empty() {
            (vec![self.topology.primary.clone()], None)
        } else {
            let region = match self.region {
                ReaderRegion::Known(region) => region.clone(),
                ReaderRegion::Of(request) => request.region_name(self.platform),
            };
            let breakers = self.platform.isolate().breakers.borrow();
            let plan =
                self.topology.read_plan(&region, &breakers, self.platform.now_ms()).into_iter().cloned().collect();
            (plan, Some(region))
        };
        let mut last_error = DbError::Unavailable("no endpoint to read from".into());
        for endpoint in &plan {
            let is_replica = endpoint.role == Role::Replica;
            // The plan was made before the earlier targets were tried: a breaker past its
            // cool-down lets one request probe it, not every one under way.
            if is_replica && !self.platform.isolate().breakers.borrow_mut().admit(&endpoint.url, self.platform.now_ms())
            {
                continue;
            }
            let attempted = if is_replica {
                self.attempt(endpoint, pipeline, body.clone(), self.data_path.replica_deadline_ms).await
            } else {
                self.attempt_primary(endpoint, pipeline, body.clone(), self.data_path.primary_deadline_ms).await
            };
            let (outcome, term) = match attempted {
                Ok(answered) => answered,
                Err(missed) if !is_replica => {
                    return self.read_after_primary_failure(endpoint, pipeline, missed, &plan, region.as_ref()).await;
                }
                Err(missed) => {
                    let error = missed.into_db_error();
                    self.platform.isolate().breakers.borrow_mut().record_failure(&endpoint.url, self.platform.now_ms());
                    self.platform.log(&format!("read from {} failed, falling back: {error}", endpoint.label()));
                    self.report.borrow_mut().fallbacks.push((endpoint.label(), "failed"));
                    last_error = error;
                    continue;
                }
            };
            self.platform.isolate().breakers.borrow_mut().record_success(&endpoint.url);
            if !is_replica {
                return Ok(self.take_primary_answer(pipeline, (outcome, term)));
            }
            if self.serves_read(endpoint, &outcome, term) {
                return Ok(outcome);
            }
        }
        Err(last_error)
    }

    /// Whether a replica's answer is one: not below the client's writes (nor of another
    /// history), and not missing the schema or a row's write. Otherwise it is noted `behind`.
    /// The index that must meet the client's token is the one from before the read (the
    /// answer's own may name the client's write though the rows missed it).
    /// A replica whose rows the isolate knows the failover left behind (read under an older
    /// term past where that term ended, or of a term the record's history does not name) is
    /// behind too for a client with a token, whatever its index: those rows hold writes the new
    /// history lost (`History::holds_rows_of`, as the cache judges its entries).
    fn serves_read(&self, replica: &Endpoint, outcome: &PipelineOutcome, term: Option<u64>) -> bool {
        let behind = self.requirement.get().is_some_and(|requirement| {
            !requirement.met_by(outcome.index_before_read, term) || self.of_a_dead_branch(outcome, term)
        });
        if behind || outcome.results.iter().any(Result::is_err) {
            self.report.borrow_mut().fallbacks.push((replica.label(), "behind"));
            return false;
        }
        true
    }

    /// Whether the isolate's primary record says these rows are of a branch the history left.
    fn of_a_dead_branch(&self, outcome: &PipelineOutcome, term: Option<u64>) -> bool {
        let (Some(term), Some(index)) = (term.filter(|term| *term > 0), outcome.index_before_read) else {
            return false;
        };
        let primary = self.platform.isolate().primary.borrow();
        primary.record().is_some_and(|record| !record.history().holds_rows_of(term, index))
    }

    /// The read plan's last resort, the primary, failed. The record's primary answers instead
    /// if it names another one (a read is safe to send again). Otherwise, or if that one fails
    /// too, every replica is asked
    /// — the farther ones the plan left out first, nearest first — and then again every
    /// [`WAIT_STEP_MS`] until the primary's deadline has passed once more: while a failover is
    /// under way, a replica catches up with writes it already pulled, and the record appears.
    /// Only an answer that meets the client's token is taken; a read is refused (503) rather
    /// than shown without the client's own writes.
    async fn read_after_primary_failure(
        &self,
        primary: &Endpoint,
        pipeline: &Pipeline,
        missed: Missed,
        tried: &[Endpoint],
        region: Option<&RegionName>,
    ) -> Result<PipelineOutcome, DbError> {
        let failure = match missed {
            Missed::Endpoint(failure) if failure.is_primary_failure() => failure,
            other => return Err(other.into_db_error()),
        };
        self.report.borrow_mut().fallbacks.push((primary.label(), "failed"));
        let mut replicas: Vec<&Endpoint> = self.topology.replicas.values().collect();
        let Some(region) = region.filter(|_| !replicas.is_empty()) else {
            return match self.replacement_for(primary).await {
                Some(replacement) => self
                    .read_on_replacement(primary, &replacement, pipeline, &failure)
                    .await
                    .map_err(Missed::into_db_error),
                None => Err(failure.into_db_error()),
            };
        };
        // Those the plan did not try first, then by distance.
        replicas.sort_by_key(|replica| {
            (tried.iter().any(|endpoint| endpoint.url == replica.url), round_trip_ms(region, &replica.region))
        });
        let give_up_at = self.platform.now_ms() + f64::from(self.data_path.primary_deadline_ms);
        // A record can name a primary that is down as well (a second failure before the next
        // promotion, or a record that reached this location late): the replicas still answer.
        let mut failed_replacements: Vec<String> = Vec::new();
        loop {
            if let Some(replacement) = self.replacement_for(primary).await
                && !failed_replacements.contains(&replacement.url)
            {
                match self.read_on_replacement(primary, &replacement, pipeline, &failure).await {
                    Err(Missed::Endpoint(failed)) if failed.is_primary_failure() => {
                        self.platform.log(&format!(
                            "the record's primary {} failed too ({failed}); asking the replicas",
                            replacement.url
                        ));
                        self.report.borrow_mut().fallbacks.push((replacement.label(), "failed"));
                        failed_replacements.push(replacement.url);
                    }
                    answered => return answered.map_err(Missed::into_db_error),
                }
            }
            for replica in &replicas {
                if !self.platform.isolate().breakers.borrow_mut().admit(&replica.url, self.platform.now_ms()) {
                    continue;
                }
                let body = self.request_body(pipeline)?;
                match self.attempt(replica, pipeline, body, self.data_path.replica_deadline_ms).await {
                    Ok((outcome, term)) => {
                        self.platform.isolate().breakers.borrow_mut().record_success(&replica.url);
                        if self.serves_read(replica, &outcome, term) {
                            return Ok(outcome);
                        }
                    }
                    Err(_) => {
                        self.platform
                            .isolate()
                            .breakers
                            .borrow_mut()
                            .record_failure(&replica.url, self.platform.now_ms());
                        self.report.borrow_mut().fallbacks.push((replica.label(), "failed"));
                    }
                }
            }
            let left_ms = give_up_at - self.platform.now_ms();
            if left_ms <= 0.0 {
                return Err(failure.into_db_error());
            }
            self.platform.sleep(WAIT_STEP_MS.min(left_ms.ceil() as u32)).await;
        }
    }

    async fn read_on_replacement(
        &self,
        primary: &Endpoint,
        replacement: &Endpoint,
        pipeline: &Pipeline,
        failure: &Failure,
    ) -> Result<PipelineOutcome, Missed> {
        self.platform.log(&format!("primary {} failed ({failure}); reading from {}", primary.url, replacement.url));
        let deadline = self.data_path.primary_deadline_ms;
        let body = self.request_body(pipeline).map_err(Missed::Answer)?;
        let answered = self.attempt_primary(replacement, pipeline, body, deadline).await?;
        Ok(self.take_primary_answer(pipeline, answered))
    }

    /// The primary the record names now, if it is not `failed` — after asking KV again when
    /// the isolate may (once per `RECHECK_INTERVAL_MS`).
    async fn replacement_for(&self, failed: &Endpoint) -> Option<Endpoint> {
        refresh_primary_record(self.platform, self.data_path.database).await;
        let state = self.platform.isolate().primary.borrow();
        let record = state.record().filter(|record| record.url != failed.url)?;
        Some(primary_endpoint(self.data_path, record))
    }

    /// One pipeline on one endpoint: its outcome and the answering node's term, or why not.
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        pipeline: &Pipeline,
        body: Vec<u8>,
        deadline_ms: u32,
    ) -> Result<(PipelineOutcome, Option<u64>), Missed> {
        let answer = self.send(endpoint, body, deadline_ms).await.map_err(Missed::Endpoint)?;
        let parsed = if self.probes(pipeline) {
            pipeline.parse_probed_response(&answer.body)
        } else {
            pipeline.parse_response(&answer.body)
        };
        match parsed {
            Ok(outcome) => {
                if let Some(why) = &outcome.probe_refused {
                    self.platform.log(&format!(
                        "index probe refused by {}: {why}; the read vouches for no index",
                        endpoint.label()
                    ));
                }
                Ok((PipelineOutcome { term: answer.term, ..outcome }, answer.term))
            }
            // Fenced while the write ran: it was rolled back, nothing of it committed.
            Err(error) => Err(Failure::of_statement(&error).map_or(Missed::Answer(error), Missed::Endpoint)),
        }
    }

    /// `attempt` on the node taken as the primary. An answer under a term older than the
    /// client's last write is no primary's answer for this client ([`Failure::Superseded`]): a
    /// former primary the promotion has not fenced yet, reached by an isolate that has not read
    /// the record since (it reads it at most once a second).
    async fn attempt_primary(
        &self,
        endpoint: &Endpoint,
        pipeline: &Pipeline,
        body: Vec<u8>,
        deadline_ms: u32,
    ) -> Result<(PipelineOutcome, Option<u64>), Missed> {
        let (outcome, term) = self.attempt(endpoint, pipeline, body, deadline_ms).await?;
        let required = self.requirement.get().and_then(|requirement| requirement.term);
        match (term, required) {
            (Some(answered), Some(required)) if answered < required => {
                Err(Missed::Endpoint(Failure::Superseded(format!(
                    "{} answered under term {answered}; the client's last write is of term {required}",
                    endpoint.url
                ))))
            }
            _ => Ok((outcome, term)),
        }
    }

    async fn send(&self, endpoint: &Endpoint, body: Vec<u8>, deadline_ms: u32) -> Result<HranaAnswer, Failure> {
        let started = self.platform.now_ms();
        let answer = self.platform.send_pipeline(&endpoint.url, &self.config.auth_token, body, deadline_ms).await;
        let elapsed = self.platform.now_ms() - started;
        self.report.borrow_mut().round_trips.push((endpoint.label(), elapsed));
        answer.map_err(Failure::of_transport).and_then(check_answer)
    }

    /// Fire and forget to the primary, for bookkeeping the response does not depend on.
    pub fn run_in_background(&self, pipeline: &Pipeline) {
        match pipeline.request_body() {
            Ok(body) => {
                self.platform.send_pipeline_in_background(&self.topology.primary.url, &self.config.auth_token, body)
            }
            Err(error) => self.platform.log(&format!("background pipeline not sent: {error}")),
        }
    }
}

/// The record's primary as an endpoint, in the region of the replica it was promoted from
/// when it is one of the configured replicas (so the read plan measures distance to where the
/// primary now is), else in the configured primary region.
fn primary_endpoint(data_path: &DataPathConfig, record: &PrimaryRecord) -> Endpoint {
    let region = data_path
        .replicas
        .iter()
        .find(|(_, url)| **url == record.url)
        .map_or_else(|| data_path.primary_region.clone(), |(region, _)| region.clone());
    Endpoint { url: record.url.clone(), region, role: Role::Primary }
}

/// Reads the primary record of `database` from KV into the isolate, if the isolate may ask
/// again (once per `RECHECK_INTERVAL_MS`); `true` when it named a new primary or term. A
/// malformed record is logged and ignored, and a KV failure leaves the isolate as it was.
pub async fn refresh_primary_record<P: Platform>(platform: &P, database: &str) -> bool {
    if !platform.isolate().primary.borrow_mut().claim_check(platform.now_ms()) {
        return false;
    }
    let key = record_key(database);
    let found = match platform.kv_get_many(&[&key]).await {
        Ok(values) => values.into_iter().next().flatten(),
        Err(error) => {
            platform.log(&format!("KV read of {key} failed: {error}"));
            return false;
        }
    };
    let record = found.as_deref().and_then(PrimaryRecord::parse);
    if found.is_some() && record.is_none() {
        platform.log(&format!("{key} is not a primary record (`{{\"url\", \"term\", \"terms\"}}`): ignored"));
    }
    let changed = platform.isolate().primary.borrow_mut().update(record);
    if changed && let Some(record) = platform.isolate().primary.borrow().record() {
        platform.log(&format!("primary of {database} is now {} (term {})", record.url, record.term));
    }
    changed
}
