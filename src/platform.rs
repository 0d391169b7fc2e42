//! `Platform` on workers-rs: randomness, Hrana over `fetch`, rate-limit bindings, `wait_until`.

use std::time::Duration;

use edgestack_core::app::{Limiter, Platform};
use edgestack_core::db::DbError;
use futures::future::{Either, select};
use worker::{AbortController, Context, Delay, Env, Fetch, Headers, Method, Request, RequestInit, console_log};

/// A database answer slower than this is treated as unavailable.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct WorkerPlatform<'a> {
    pub env: &'a Env,
    pub context: &'a Context,
}

fn limiter_binding(limiter: Limiter) -> &'static str {
    match limiter {
        Limiter::SignInPerAccount => "SIGNIN_PER_ACCOUNT",
        Limiter::SignInPerClient => "SIGNIN_PER_CLIENT",
    }
}

impl Platform for WorkerPlatform<'_> {
    fn fill_random(&self, buffer: &mut [u8]) -> Result<(), String> {
        getrandom::getrandom(buffer).map_err(|error| error.to_string())
    }

    async fn send_pipeline(&self, url: &str, token: &str, body: Vec<u8>) -> Result<Vec<u8>, DbError> {
        post_pipeline(url.to_string(), token.to_string(), body).await
    }

    async fn within_rate_limit(&self, limiter: Limiter, key: &str) -> bool {
        let binding = limiter_binding(limiter);
        let outcome = match self.env.rate_limiter(binding) {
            Ok(rate_limiter) => rate_limiter.limit(key.to_string()).await,
            Err(error) => Err(error),
        };
        // Fail open: the limiter slows guessing down, it is not what keeps accounts safe.
        outcome.map(|outcome| outcome.success).unwrap_or_else(|error| {
            console_log!("rate limiter {binding} unavailable: {error}");
            true
        })
    }

    async fn sleep(&self, milliseconds: u32) {
        Delay::from(Duration::from_millis(u64::from(milliseconds))).await;
    }

    fn send_pipeline_in_background(&self, url: &str, token: &str, body: Vec<u8>) {
        let (url, token) = (url.to_string(), token.to_string());
        self.context.wait_until(async move {
            if let Err(error) = post_pipeline(url, token, body).await {
                console_log!("background pipeline failed: {error}");
            }
        });
    }

    fn log(&self, message: &str) {
        console_log!("{message}");
    }
}

async fn post_pipeline(url: String, token: String, body: Vec<u8>) -> Result<Vec<u8>, DbError> {
    let unavailable = |why: String| DbError::Unavailable(why);
    let headers = Headers::new();
    headers.set("Authorization", &format!("Bearer {token}")).map_err(|e| unavailable(e.to_string()))?;
    headers.set("Content-Type", "application/json").map_err(|e| unavailable(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(worker::js_sys::Uint8Array::from(body.as_slice()).into()));
    let request =
        Request::new_with_init(&format!("{url}/v3/pipeline"), &init).map_err(|e| unavailable(e.to_string()))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let sent = Box::pin(fetch.send_with_signal(&signal));
    let deadline = Box::pin(Delay::from(DATABASE_TIMEOUT));
    let mut response = match select(sent, deadline).await {
        Either::Left((response, _)) => response.map_err(|e| unavailable(e.to_string()))?,
        Either::Right(_) => {
            controller.abort();
            return Err(unavailable(format!("no answer within {DATABASE_TIMEOUT:?}")));
        }
    };
    let status = response.status_code();
    let bytes = response.bytes().await.map_err(|e| unavailable(e.to_string()))?;
    match status {
        200..=299 => Ok(bytes),
        500..=599 => Err(unavailable(format!("HTTP {status}"))),
        _ => Err(DbError::Protocol(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>()
        ))),
    }
}
