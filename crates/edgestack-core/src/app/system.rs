//! Endpoints about the service itself: health and CSP violation reports.
//! See [docs/api.md § Health](../../../../docs/api.md#health).

use crate::csp_report::{LEGACY_CONTENT_TYPE, parse_reports};
use crate::error::ApiError;
use crate::health::HealthReport;
use crate::json_body::{check_identity_encoding, check_json_content_type};

use super::{ApiResponse, Context, Platform};

/// `GET /api/health` (one Worker) and `GET /internal/health` (a service, for the entry's report)
/// — which version answered, where, and whether a database is configured. No body. Answers
/// `200` [`HealthReport`]; never touches the database. [docs/api.md § Health](../../../../docs/api.md#health)
pub fn health<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let request = context.request;
    let region = request.region(context.platform);
    ApiResponse::json(200, &HealthReport::new(context.config, &request.version, &region))
}

/// `POST /api/csp-reports` — Content-Security-Policy violation reports, posted by browsers (the
/// CSP's `report-uri`), without same-origin proof; only logged. Body `{"csp-report": {…}}`
/// (`application/csp-report`) or a Reporting API array. Answers `204`. Errors: the body errors
/// (`400 invalid_body` when it is JSON but neither format). Not a client call, so not in
/// [docs/api.md](../../../../docs/api.md).
pub fn csp_report<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let request = context.request;
    check_identity_encoding(request.header("content-encoding"))?;
    check_json_content_type(request.header("content-type"), &[LEGACY_CONTENT_TYPE])?;
    for violation in parse_reports(&request.body)? {
        context.platform.log(&format!(
            "csp violation: directive={} blocked={} document={}",
            violation.directive, violation.blocked, violation.document
        ));
    }
    Ok(ApiResponse::empty(204))
}
