//! `/__gateway/config` and `/__gateway/stats`: the release command's handle on the gateway,
//! behind a bearer token (`GATEWAY_TOKEN`); without a token configured they do not exist.

use release::stats::ConfigUpdate;
use serde_json::json;
use worker::{Method, Request, Response, Result};

use crate::Settings;
use crate::state::with_state;

pub async fn handle(mut req: Request, settings: &Settings) -> Result<Response> {
    let Some(token) = settings.token.as_deref() else {
        return error(404, "not_found", "no such path");
    };
    let presented = req.headers().get("authorization").ok().flatten().unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), format!("Bearer {token}").as_bytes()) {
        return error(401, "unauthenticated", "a valid gateway token is required");
    }
    match (req.method(), req.path().as_str()) {
        (Method::Get, "/__gateway/stats") => Response::from_json(&with_state(|state| state.stats())),
        (Method::Get, "/__gateway/config") => {
            Response::from_json(&with_state(|state| json!({"split": state.stats().current.split})))
        }
        (Method::Post, "/__gateway/config") => {
            let Ok(update) = req.json::<ConfigUpdate>().await else {
                return error(400, "invalid_body", "expected {\"split\": {\"default_bps\": N, \"regions\": {..}}}");
            };
            if let Err(problem) = update.split.validate() {
                return error(400, "invalid_split", &problem.to_string());
            }
            Response::from_json(&with_state(|state| state.set_split(update.split)))
        }
        _ => error(404, "not_found", "no such path"),
    }
}

fn error(status: u16, code: &str, message: &str) -> Result<Response> {
    Ok(Response::from_json(&json!({"error": {"code": code, "message": message}}))?.with_status(status))
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
