//! How handlers reach the database: one pipeline per call. Writes and authoritative reads go
//! to the primary; other reads go through the read plan (nearest replica first), falling back on a failed, slow or lagging
//! replica; every round trip is recorded for `Server-Timing`, and failures are [`DbError`]s,
//! which `?` turns into API errors (503 with `Retry-After` when no database can answer — never
//! a hang or a bare 500; see `error.rs`).

use std::cell::RefCell;

use crate::config::{DataPathConfig, DatabaseConfig};
use crate::datapath::{ConsistencyToken, Endpoint, Role, Topology};
use crate::db::{DbError, Pipeline, PipelineKind, PipelineOutcome};
use crate::region::RegionName;

use super::{ApiRequest, Platform, RequestReport};

/// The reader's region, for the read plan: found only when replicas make it matter.
#[derive(Clone, Copy)]
pub enum ReaderRegion<'a> {
    Known(&'a RegionName),
    Of(&'a ApiRequest),
}

pub struct Database<'a, P: Platform> {
    platform: &'a P,
    config: &'a DatabaseConfig,
    data_path: &'a DataPathConfig,
    topology: Topology,
    region: ReaderRegion<'a>,
    consistency: Option<ConsistencyToken>,
    report: &'a RefCell<RequestReport>,
}

impl<'a, P: Platform> Database<'a, P> {
    pub fn new(
        platform: &'a P,
        config: &'a DatabaseConfig,
        data_path: &'a DataPathConfig,
        region: ReaderRegion<'a>,
        consistency: Option<ConsistencyToken>,
        report: &'a RefCell<RequestReport>,
    ) -> Self {
        Self { platform, config, data_path, topology: data_path.topology(config), region, consistency, report }
    }

    /// One round trip (two when a replica turns out to be behind the client's own writes).
    /// Statement failures of a read come back per statement in the outcome; a failed write
    /// statement is `DbError::Statement` (the transaction was rolled back).
    pub async fn run(&self, pipeline: &Pipeline) -> Result<PipelineOutcome, DbError> {
        match pipeline.kind {
            PipelineKind::Write | PipelineKind::AuthoritativeRead => self.on_primary(pipeline).await,
            PipelineKind::Read => self.read(pipeline).await,
        }
    }

    /// The smallest replication index a read must reflect for this client.
    pub fn required_index(&self) -> Option<u64> {
        self.consistency.map(|token| token.replication_index)
    }

    async fn on_primary(&self, pipeline: &Pipeline) -> Result<PipelineOutcome, DbError> {
        let body = pipeline.request_body()?;
        let outcome = self.send(&self.topology.primary, body, self.data_path.primary_deadline_ms).await;
        let outcome = outcome.and_then(|response| pipeline.parse_response(&response))?;
        if pipeline.kind == PipelineKind::Write
            && let Some(index) = outcome.replication_index
        {
            let mut report = self.report.borrow_mut();
            report.written_index = report.written_index.max(Some(index));
        }
        Ok(outcome)
    }

    async fn read(&self, pipeline: &Pipeline) -> Result<PipelineOutcome, DbError> {
        let body = pipeline.request_body()?;
        // Without replicas every read goes to the primary, wherever the reader is.
        let plan: Vec<Endpoint> = if self.topology.replicas.is_empty() {
            vec![self.topology.primary.clone()]
        } else {
            let region = match self.region {
                ReaderRegion::Known(region) => region.clone(),
                ReaderRegion::Of(request) => request.region_name(self.platform),
            };
            let breakers = self.platform.isolate().breakers.borrow();
            self.topology.read_plan(&region, &breakers, self.platform.now_ms()).into_iter().cloned().collect()
        };
        let mut last_error = DbError::Unavailable("no endpoint to read from".into());
        for endpoint in &plan {
            let is_replica = endpoint.role == Role::Replica;
            let deadline =
                if is_replica { self.data_path.replica_deadline_ms } else { self.data_path.primary_deadline_ms };
            let answer = self.send(endpoint, body.clone(), deadline).await;
            let outcome = match answer.and_then(|response| pipeline.parse_response(&response)) {
                Ok(outcome) => outcome,
                Err(error) if !is_replica => return Err(error),
                Err(error) => {
                    self.platform.isolate().breakers.borrow_mut().record_failure(&endpoint.url, self.platform.now_ms());
                    self.platform.log(&format!("read from {} failed, falling back: {error}", endpoint.label()));
                    self.report.borrow_mut().fallbacks.push((endpoint.label(), "failed"));
                    last_error = error;
                    continue;
                }
            };
            self.platform.isolate().breakers.borrow_mut().record_success(&endpoint.url);
            if is_replica {
                // A replica that misses the schema or a row's write is not an answer either.
                let behind =
                    self.required_index().is_some_and(|required| outcome.replication_index.unwrap_or(0) < required);
                if behind || outcome.results.iter().any(Result::is_err) {
                    self.report.borrow_mut().fallbacks.push((endpoint.label(), "behind"));
                    continue;
                }
            }
            return Ok(outcome);
        }
        Err(last_error)
    }

    async fn send(&self, endpoint: &Endpoint, body: Vec<u8>, deadline_ms: u32) -> Result<Vec<u8>, DbError> {
        let started = self.platform.now_ms();
        let answer = self.platform.send_pipeline(&endpoint.url, &self.config.auth_token, body, deadline_ms).await;
        let elapsed = self.platform.now_ms() - started;
        self.report.borrow_mut().round_trips.push((endpoint.label(), elapsed));
        answer
    }

    /// Fire and forget to the primary, for bookkeeping the response does not depend on.
    pub fn run_in_background(&self, pipeline: &Pipeline) {
        match pipeline.request_body() {
            Ok(body) => {
                self.platform.send_pipeline_in_background(&self.config.primary_url, &self.config.auth_token, body)
            }
            Err(error) => self.platform.log(&format!("background pipeline not sent: {error}")),
        }
    }
}
