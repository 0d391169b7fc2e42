//! Endpoints about the service itself: health and CSP violation reports.

use crate::csp_report::{LEGACY_CONTENT_TYPE, parse_reports};
use crate::error::ApiError;
use crate::health::HealthReport;
use crate::json_body::check_json_content_type;

use super::{ApiResponse, Context, Platform};

pub fn health<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let request = context.request;
    let region = request.region(context.platform);
    ApiResponse::json(200, &HealthReport::new(context.config, &request.version, &region))
}

pub fn csp_report<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let request = context.request;
    check_json_content_type(request.header("content-type"), &[LEGACY_CONTENT_TYPE])?;
    for violation in parse_reports(&request.body)? {
        context.platform.log(&format!(
            "csp violation: directive={} blocked={} document={}",
            violation.directive, violation.blocked, violation.document
        ));
    }
    Ok(ApiResponse::empty(204))
}
