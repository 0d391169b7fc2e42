//! `devdb promote` and `devdb follow`: ask a running node to change role over its admin
//! endpoints, and print its answer (the node's new view, as `GET /_devdb/primary` gives it).

use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::cli::{FollowArgs, PromoteArgs};

/// A promotion asks the peers for their terms (a second at most each) before it answers.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn promote(args: PromoteArgs) -> Result<(), String> {
    post(&args.url, "/_devdb/promote", args.token.as_deref(), &json!({})).await
}

pub async fn follow(args: FollowArgs) -> Result<(), String> {
    let body = json!({"primary": args.primary, "resync": args.resync});
    post(&args.url, "/_devdb/follow", args.token.as_deref(), &body).await
}

async fn post(url: &str, path: &str, token: Option<&str>, body: &Json) -> Result<(), String> {
    let target = format!("{}{path}", url.trim_end_matches('/'));
    let mut req = reqwest::Client::new().post(&target).json(body).timeout(ADMIN_TIMEOUT);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| format!("{target}: {e}"))?;
    let status = resp.status();
    let answer: Json = resp.json().await.map_err(|e| format!("{target} answered {status}, not JSON: {e}"))?;
    if !status.is_success() {
        let message = answer["message"].as_str().unwrap_or("no message");
        let code = answer["code"].as_str().unwrap_or("?");
        return Err(format!("{target} refused ({status}, {code}): {message}"));
    }
    println!("{answer:#}");
    Ok(())
}
