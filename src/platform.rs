//! `Platform` on workers-rs: randomness, Hrana over `fetch` with deadlines, Workers KV,
//! rate-limit bindings, `wait_until`, and the isolate's memory.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use edgestack_core::app::{ApiResponse, IsolateState, KvWrite, Limiter, Platform, ServiceRequest};
use edgestack_core::datapath::HranaAnswer;
use edgestack_core::db::DbError;
use edgestack_core::region::Location;
use edgestack_core::services::Service;
use edgestack_core::text::Form;
use futures::future::{Either, select};
use worker::js_sys;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::ext::RequestExt;
use worker::worker_sys::web_sys;
use worker::{Context, Env, ScheduleContext, console_log};

use crate::edge::{self, Exchange};

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
    /// The request being answered (none for a cron event), for its `cf` location.
    request: Option<&'a web_sys::Request>,
    location: OnceCell<Location>,
}

impl<'a> WorkerPlatform<'a> {
    pub fn new(env: &'a Env, background: &'a dyn Background, request: Option<&'a web_sys::Request>) -> Self {
        Self { env, background, isolate: ISOLATE.with(|isolate| *isolate), request, location: OnceCell::new() }
    }
}

/// The `[[ratelimits]]` binding of each limiter (wrangler.toml, services/accounts/wrangler.toml).
fn limiter_binding(limiter: Limiter) -> &'static str {
    match limiter {
        Limiter::SignInPerClient => "SIGNIN_PER_CLIENT",
        Limiter::SignInPerDevice => "SIGNIN_PER_DEVICE",
        Limiter::SignUpPerClient => "SIGNUP_PER_CLIENT",
    }
}

/// Resolves after `duration`: a JavaScript timer behind a Promise.
///
/// Every future on the request path must take its waker anew on each poll (a JS Promise does):
/// `src/lib.rs` polls a request once with a no-op waker before handing it to the executor, and
/// a timer that kept the first waker (workers-rs' `Delay`) would never wake the request.
fn timer(duration: Duration) -> JsFuture {
    let milliseconds = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let _ = global.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, milliseconds);
    });
    JsFuture::from(promise)
}

/// Runs `future` unless `deadline` passes first.
async fn within<T>(deadline: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    match select(Box::pin(future), timer(deadline)).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

impl Platform for WorkerPlatform<'_> {
    fn fill_random(&self, buffer: &mut [u8]) -> Result<(), String> {
        getrandom::getrandom(buffer).map_err(|error| error.to_string())
    }

    fn now_ms(&self) -> f64 {
        crate::edge::now_ms()
    }

    fn normalize(&self, text: &str, form: Form) -> String {
        let form = match form {
            Form::Nfc => "NFC",
            Form::Nfkc => "NFKC",
        };
        js_sys::JsString::from(text).normalize(form).into()
    }

    fn isolate(&self) -> &IsolateState {
        self.isolate
    }

    fn location(&self) -> Location {
        let read = || {
            let cf = self.request.and_then(RequestExt::cf);
            Location {
                continent: cf.as_ref().and_then(|cf| cf.continent().ok().flatten()),
                colo: cf.as_ref().and_then(|cf| cf.colo().ok()),
            }
        };
        self.location.get_or_init(read).clone()
    }

    async fn send_pipeline(
        &self,
        url: &str,
        token: &str,
        body: Vec<u8>,
        deadline_ms: u32,
    ) -> Result<HranaAnswer, DbError> {
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
                let _ = timer(Duration::from_millis(u64::from(write.after_ms))).await;
            }
            for attempt in 0..2 {
                if attempt > 0 {
                    // KV takes one write per second per key: the retry waits that second out.
                    let _ = timer(KV_WRITE_INTERVAL).await;
                }
                let Some(value) = (write.value)(isolate, crate::edge::now_ms()) else { return };
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

    /// A missing or failing binding is an `Err`, which the core turns into a refusal (fail
    /// closed; `app::accounts::within_budget` says why).
    async fn within_rate_limit(&self, limiter: Limiter, key: &str) -> Result<bool, String> {
        let binding = limiter_binding(limiter);
        let rate_limiter = self.env.rate_limiter(binding).map_err(|error| format!("no {binding} binding: {error}"))?;
        let outcome = rate_limiter.limit(key.to_string()).await.map_err(|error| format!("{binding}: {error}"))?;
        Ok(outcome.success)
    }

    async fn sleep(&self, milliseconds: u32) {
        let _ = timer(Duration::from_millis(u64::from(milliseconds))).await;
    }

    fn send_pipeline_in_background(&self, url: &str, token: &str, body: Vec<u8>) {
        let (url, token) = (url.to_string(), token.to_string());
        self.background.wait_until(Box::pin(async move {
            match post_pipeline(url, token, body, Duration::from_secs(5)).await {
                Ok(answer) if (200..300).contains(&answer.status) => {}
                Ok(answer) => console_log!("background pipeline answered HTTP {}", answer.status),
                Err(error) => console_log!("background pipeline failed: {error}"),
            }
        }));
    }

    fn log(&self, message: &str) {
        console_log!("{message}");
    }

    async fn call_service(
        &self,
        service: Service,
        request: ServiceRequest,
        deadline_ms: u32,
    ) -> Result<ApiResponse, String> {
        let binding = service.binding().ok_or_else(|| format!("{} has no binding", service.as_str()))?;
        match edge::call_service(self.env, binding, &request, deadline_ms).await {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(format!("no answer within {deadline_ms} ms")),
            Err(error) => Err(describe(&error)),
        }
    }
}

/// `POST {url}/v3/pipeline`: whatever the endpoint answered (the core reads the status and a
/// refusal's code, `datapath::failover`). The deadline is the runtime's own
/// (`AbortSignal.timeout`): it covers the body too — a server that stalls mid-answer is as slow
/// as one that never answers.
async fn post_pipeline(url: String, token: String, body: Vec<u8>, deadline: Duration) -> Result<HranaAnswer, DbError> {
    let unavailable = |why: String| DbError::Unavailable(why);
    let milliseconds = u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX);
    let exchange = edge::post(&format!("{url}/v3/pipeline"), &format!("Bearer {token}"), &body, milliseconds).await;
    match exchange.map_err(|error| unavailable(describe(&error)))? {
        Exchange::Answered { status, body, term } => Ok(HranaAnswer { status, body, term }),
        Exchange::TimedOut => Err(unavailable(format!("no answer within {deadline:?}"))),
    }
}

/// A JavaScript error's message, for logs.
fn describe(error: &JsValue) -> String {
    error.dyn_ref::<js_sys::Error>().map_or_else(|| format!("{error:?}"), |error| String::from(error.message()))
}
