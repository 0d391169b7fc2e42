//! `Platform` on workers-rs: randomness, Hrana over `fetch` with deadlines, Workers KV,
//! rate-limit bindings, `wait_until`, and the isolate's memory.

use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use edgestack_core::app::{ApiResponse, IsolateState, KvWrite, Limiter, Platform, ServiceRequest};
use edgestack_core::db::DbError;
use edgestack_core::services::Service;
use futures::future::{Either, select};
use worker::{
    AbortController, Context, Date, Delay, Env, Fetch, Headers, Method, Request, RequestInit, ScheduleContext,
    console_log,
};

/// Name of the KV namespace binding in wrangler.toml.
const CACHE_BINDING: &str = "CACHE";
/// A KV read slower than this is abandoned for the database.
const KV_DEADLINE: Duration = Duration::from_millis(200);
/// KV accepts one write per second to a key (platform limit).
const KV_WRITE_INTERVAL: Duration = Duration::from_millis(1_000);

thread_local! {
    // One isolate runs one thread; module state lives as long as the isolate.
    static ISOLATE: &'static IsolateState = Box::leak(Box::default());
}

/// Work that may finish after the response: a fetch event's and a cron event's `wait_until`.
pub trait Background {
    fn wait_until(&self, work: Pin<Box<dyn Future<Output = ()>>>);
}

impl Background for Context {
    fn wait_until(&self, work: Pin<Box<dyn Future<Output = ()>>>) {
        Context::wait_until(self, work);
    }
}

impl Background for ScheduleContext {
    fn wait_until(&self, work: Pin<Box<dyn Future<Output = ()>>>) {
        ScheduleContext::wait_until(self, work);
    }
}

pub struct WorkerPlatform<'a> {
    pub env: &'a Env,
    background: &'a dyn Background,
    isolate: &'static IsolateState,
}

impl<'a> WorkerPlatform<'a> {
    pub fn new(env: &'a Env, background: &'a dyn Background) -> Self {
        Self { env, background, isolate: ISOLATE.with(|isolate| *isolate) }
    }
}

fn limiter_binding(limiter: Limiter) -> &'static str {
    match limiter {
        Limiter::SignInPerAccount => "SIGNIN_PER_ACCOUNT",
        Limiter::SignInPerClient => "SIGNIN_PER_CLIENT",
    }
}

/// Runs `future` unless `deadline` passes first.
async fn within<T>(deadline: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    match select(Box::pin(future), Box::pin(Delay::from(deadline))).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

impl Platform for WorkerPlatform<'_> {
    fn fill_random(&self, buffer: &mut [u8]) -> Result<(), String> {
        getrandom::getrandom(buffer).map_err(|error| error.to_string())
    }

    fn now_ms(&self) -> f64 {
        Date::now().as_millis() as f64
    }

    fn isolate(&self) -> &IsolateState {
        self.isolate
    }

    async fn send_pipeline(&self, url: &str, token: &str, body: Vec<u8>, deadline_ms: u32) -> Result<Vec<u8>, DbError> {
        post_pipeline(url.to_string(), token.to_string(), body, Duration::from_millis(u64::from(deadline_ms))).await
    }

    async fn kv_get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let kv = self.env.kv(CACHE_BINDING).map_err(|e| e.to_string())?;
        // One bulk read (a single KV operation); cached values and floors are UTF-8 text.
        let mut values = match within(KV_DEADLINE, kv.get_bulk(keys).text()).await {
            Some(result) => result.map_err(|e| e.to_string())?,
            None => return Err(format!("no answer within {KV_DEADLINE:?}")),
        };
        Ok(keys.iter().map(|key| values.remove(*key).flatten().map(String::into_bytes)).collect())
    }

    fn kv_put_in_background(&self, write: KvWrite) {
        let Ok(kv) = self.env.kv(CACHE_BINDING) else { return };
        let isolate = self.isolate;
        self.background.wait_until(Box::pin(async move {
            if write.after_ms > 0 {
                Delay::from(Duration::from_millis(u64::from(write.after_ms))).await;
            }
            for attempt in 0..2 {
                if attempt > 0 {
                    // KV takes one write per second per key: the retry waits that second out.
                    Delay::from(KV_WRITE_INTERVAL).await;
                }
                let Some(value) = (write.value)(isolate, Date::now().as_millis() as f64) else { return };
                let put = kv.put_bytes(&write.key, &value).map(|put| put.expiration_ttl(u64::from(write.ttl_seconds)));
                let outcome = match put {
                    Ok(put) => put.execute().await,
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(()) => return,
                    Err(error) => console_log!("KV put of {} failed (attempt {}): {error}", write.key, attempt + 1),
                }
            }
        }));
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
        self.background.wait_until(Box::pin(async move {
            if let Err(error) = post_pipeline(url, token, body, Duration::from_secs(5)).await {
                console_log!("background pipeline failed: {error}");
            }
        }));
    }

    fn log(&self, message: &str) {
        console_log!("{message}");
    }

    async fn call_service(&self, service: Service, request: ServiceRequest) -> Result<ApiResponse, String> {
        let binding = service.binding().ok_or_else(|| format!("{} has no binding", service.as_str()))?;
        let fetcher = self.env.service(binding).map_err(|e| format!("no {binding} binding: {e}"))?;
        let headers = Headers::new();
        for (name, value) in &request.headers {
            headers.append(name, value).map_err(|e| e.to_string())?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::from(request.method.as_str().to_string())).with_headers(headers);
        if !request.body.is_empty() {
            init.with_body(Some(worker::js_sys::Uint8Array::from(request.body.as_slice()).into()));
        }
        let outgoing = Request::new_with_init(&request.url, &init).map_err(|e| e.to_string())?;
        let mut response = fetcher.fetch_request(outgoing).await.map_err(|e| e.to_string())?;
        let headers = response
            .headers()
            .entries()
            .filter(|(name, _)| !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection"))
            .collect();
        let status = response.status_code();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok(ApiResponse { status, headers, body })
    }
}

async fn post_pipeline(url: String, token: String, body: Vec<u8>, deadline: Duration) -> Result<Vec<u8>, DbError> {
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
    // The deadline covers the body too: a server that stalls mid-answer is as slow as one that
    // never answers.
    let exchange = async {
        let mut response = fetch.send_with_signal(&signal).await.map_err(|e| unavailable(e.to_string()))?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        Ok::<_, DbError>((status, bytes))
    };
    let Some(answer) = within(deadline, exchange).await else {
        controller.abort();
        return Err(unavailable(format!("no answer within {deadline:?}")));
    };
    let (status, bytes) = answer?;
    match status {
        200..=299 => Ok(bytes),
        500..=599 => Err(unavailable(format!("HTTP {status}"))),
        _ => Err(DbError::Protocol(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>()
        ))),
    }
}
