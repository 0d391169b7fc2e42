//! API handlers: resolve the route in the core, do the I/O here, answer JSON.

use edgestack_core::config::Config;
use edgestack_core::csp_report::{LEGACY_CONTENT_TYPE, parse_reports};
use edgestack_core::error::ApiError;
use edgestack_core::health::HealthReport;
use edgestack_core::json_body::check_json_content_type;
use edgestack_core::region::{DEV_REGION_HEADER, RegionHints, RequestRegion};
use edgestack_core::routes::{Method, Route, resolve};
use worker::{Env, Request, Response, console_error, console_log};

use crate::bindings;
use crate::http::{empty_response, error_response, header, json_response, read_body};

pub async fn handle(mut req: Request, env: &Env) -> worker::Result<Response> {
    match dispatch(&mut req, env).await {
        Ok(response) => Ok(response),
        Err(error) => error_response(&error),
    }
}

async fn dispatch(req: &mut Request, env: &Env) -> Result<Response, ApiError> {
    let route = resolve(Method::parse(req.method().as_ref()), &req.path())?;
    let config = bindings::config(env).map_err(|error| {
        console_error!("configuration error: {error}");
        ApiError::new(500, "misconfigured", "the service is misconfigured")
    })?;
    match route {
        Route::Health => health(req, env, &config),
        Route::CspReport => csp_report(req).await,
    }
}

fn request_region(req: &Request, config: &Config) -> RequestRegion {
    let cf = req.cf();
    let hints = RegionHints {
        continent: cf.and_then(|cf| cf.continent()),
        colo: cf.map(|cf| cf.colo()),
        override_header: header(req, DEV_REGION_HEADER),
    };
    RequestRegion::detect(&hints, config.is_development())
}

fn health(req: &Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let version = bindings::version_info(env);
    let region = request_region(req, config);
    json_response(200, &HealthReport::new(config, &version, &region))
}

async fn csp_report(req: &mut Request) -> Result<Response, ApiError> {
    check_json_content_type(header(req, "content-type").as_deref(), &[LEGACY_CONTENT_TYPE])?;
    let body = read_body(req).await?;
    for violation in parse_reports(&body)? {
        console_log!(
            "csp violation: directive={} blocked={} document={}",
            violation.directive,
            violation.blocked,
            violation.document
        );
    }
    empty_response(204)
}
