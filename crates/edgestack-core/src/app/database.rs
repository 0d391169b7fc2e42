//! How handlers reach the database: one pipeline per call, and failures turned into API errors
//! (503 with `Retry-After` when the database cannot answer, never a hang or a bare 500).

use crate::config::DatabaseConfig;
use crate::db::{DbError, Pipeline, PipelineOutcome};
use crate::error::ApiError;

use super::Platform;

pub struct Database<'a, P: Platform> {
    platform: &'a P,
    config: &'a DatabaseConfig,
}

/// Seconds a client should wait before retrying when the database is unavailable.
const RETRY_AFTER_SECONDS: &str = "5";

impl<'a, P: Platform> Database<'a, P> {
    pub fn new(platform: &'a P, config: &'a DatabaseConfig) -> Self {
        Self { platform, config }
    }

    /// One round trip. Statement failures of a read come back per statement in the outcome;
    /// a failed write statement is `DbError::Statement` (the transaction was rolled back).
    pub async fn run(&self, pipeline: &Pipeline) -> Result<PipelineOutcome, DbError> {
        let body = pipeline.request_body()?;
        let response = self.platform.send_pipeline(&self.config.primary_url, &self.config.auth_token, body).await?;
        pipeline.parse_response(&response)
    }

    /// Like [`Self::run`], for callers with no statement errors of their own to handle.
    pub async fn query(&self, pipeline: &Pipeline) -> Result<PipelineOutcome, ApiError> {
        self.run(pipeline).await.map_err(|error| self.failure(error))
    }

    /// Fire and forget, for bookkeeping the response does not depend on.
    pub fn run_in_background(&self, pipeline: &Pipeline) {
        match pipeline.request_body() {
            Ok(body) => {
                self.platform.send_pipeline_in_background(&self.config.primary_url, &self.config.auth_token, body)
            }
            Err(error) => self.platform.log(&format!("background pipeline not sent: {error}")),
        }
    }

    /// Logs the cause and gives the client only what it can act on.
    pub fn failure(&self, error: DbError) -> ApiError {
        self.platform.log(&format!("database: {error}"));
        match error {
            DbError::Unavailable(_) => {
                ApiError::new(503, "database_unavailable", "the database is not reachable; try again shortly")
                    .with_header("Retry-After", RETRY_AFTER_SECONDS)
            }
            DbError::Protocol(_) => ApiError::new(502, "database_error", "the database gave an unexpected answer"),
            DbError::Statement { .. } => ApiError::internal(),
        }
    }
}
