//! The crossings between wasm and the runtime's JavaScript objects that every request makes,
//! one call each (`src/edge.js` says why).

use std::rc::Rc;
use std::sync::OnceLock;

use edgestack_core::app::{ApiResponse, RequestHeaders, ServiceRequest};
use worker::js_sys;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(module = "/src/edge.js")]
extern "C" {
    // `catch` on every import: a JavaScript exception must come back as an error, never unwind
    // through wasm (which would reset the instance).
    #[wasm_bindgen(js_name = requestHead, catch)]
    fn request_head(request: &web_sys::Request) -> Result<String, JsValue>;

    #[wasm_bindgen(js_name = requestHeader, catch)]
    fn request_header(request: &web_sys::Request, name: &str) -> Result<Option<String>, JsValue>;

    #[wasm_bindgen(js_name = prepareIsolate, catch)]
    fn prepare_isolate_js(version_id: &str, standard_lines: &str) -> Result<(), JsValue>;

    #[wasm_bindgen(catch)]
    fn respond(status: u16, header_lines: &str, body: Option<&[u8]>) -> Result<web_sys::Response, JsValue>;

    #[wasm_bindgen(js_name = recordRequest, catch)]
    pub fn record_request(
        env: &JsValue,
        binding: &str,
        route: &str,
        status_class: &str,
        latency_ms: f64,
    ) -> Result<(), JsValue>;
}

#[wasm_bindgen(module = "/src/edge.js")]
extern "C" {
    #[wasm_bindgen(js_name = readBody, catch)]
    fn read_body(request: &web_sys::Request, limit: u32, deadline_ms: u32) -> Result<js_sys::Promise, JsValue>;

    /// Gives up the request body unread (`src/edge.js` `discardBody` says why).
    #[wasm_bindgen(js_name = discardBody)]
    pub fn discard_body(request: &web_sys::Request);

    #[wasm_bindgen(js_name = postPipeline, catch)]
    fn post_pipeline(url: &str, authorization: &str, body: &[u8], deadline_ms: u32)
    -> Result<js_sys::Promise, JsValue>;

    #[wasm_bindgen(js_name = callService, catch)]
    fn call_service_js(
        env: &JsValue,
        binding: &str,
        method: &str,
        url: &str,
        header_lines: &str,
        body: Option<&[u8]>,
        deadline_ms: u32,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// The runtime's clock in milliseconds since the Unix epoch (in Workers it advances only across
/// I/O): `Date.now()`, without the `Date` object `worker::Date::now` builds on every call.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// How reading a request body ended.
pub enum Body {
    Read(Vec<u8>),
    /// Longer than the limit (never buffered whole).
    TooLarge,
    /// Not all there when the deadline passed.
    TimedOut,
}

/// The request body, at most `limit` bytes, all arrived within `deadline_ms`.
pub async fn body(request: &web_sys::Request, limit: usize, deadline_ms: u32) -> Result<Body, JsValue> {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let body = JsFuture::from(read_body(request, limit, deadline_ms)?).await?;
    Ok(if body.is_null() {
        Body::TooLarge
    } else if body.as_bool() == Some(false) {
        Body::TimedOut
    } else {
        Body::Read(body.unchecked_into::<js_sys::Uint8Array>().to_vec())
    })
}

/// How a subrequest ended.
pub enum Exchange {
    Answered {
        status: u16,
        body: Vec<u8>,
        /// The answering node's term (`x-devdb-term`), when `postPipeline` passes it on as the
        /// third element of its answer and the node sends one (docs/failover.md).
        term: Option<u64>,
    },
    /// The deadline passed first.
    TimedOut,
}

/// `POST url` with `body` and an `Authorization` header, given up after `deadline_ms`.
pub async fn post(url: &str, authorization: &str, body: &[u8], deadline_ms: u32) -> Result<Exchange, JsValue> {
    let answer: js_sys::Array =
        JsFuture::from(post_pipeline(url, authorization, body, deadline_ms)?).await?.unchecked_into();
    let status = answer.get(0).as_f64().unwrap_or(0.0) as u16;
    if status == 0 {
        return Ok(Exchange::TimedOut);
    }
    let term = answer.get(2).as_string().and_then(|term| term.trim().parse().ok());
    Ok(Exchange::Answered { status, body: answer.get(1).unchecked_into::<js_sys::Uint8Array>().to_vec(), term })
}

/// `request` to the Worker bound as `env[binding]`, given up after `deadline_ms`: its answer
/// (framing headers dropped), or `None` when the deadline passed first. `Err` (the runtime's
/// exception) without the binding or when the other Worker threw.
pub async fn call_service(
    env: &JsValue,
    binding: &str,
    request: &ServiceRequest,
    deadline_ms: u32,
) -> Result<Option<ApiResponse>, JsValue> {
    let headers = header_lines(request.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())));
    let body = (!request.body.is_empty()).then_some(request.body.as_slice());
    let promise = call_service_js(env, binding, request.method.as_str(), &request.url, &headers, body, deadline_ms)?;
    let answer: js_sys::Array = JsFuture::from(promise).await?.unchecked_into();
    let status = answer.get(0).as_f64().unwrap_or(0.0) as u16;
    if status == 0 {
        return Ok(None);
    }
    let lines = answer.get(1).as_string().unwrap_or_default();
    let mut fields = lines.split('\n');
    let mut headers = Vec::new();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        headers.push((name.to_string(), value.to_string()));
    }
    let body = answer.get(2).unchecked_into::<js_sys::Uint8Array>().to_vec();
    Ok(Some(ApiResponse { status, headers, body }))
}

/// The request line: method and URL (the runtime's serialization).
pub struct RequestHead {
    pub method: String,
    pub url: String,
}

impl RequestHead {
    pub fn of(request: &web_sys::Request) -> Result<Self, JsValue> {
        let head = request_head(request)?;
        let (method, url) = head.split_once('\n').unwrap_or((&head, ""));
        Ok(Self { method: method.to_string(), url: url.to_string() })
    }
}

/// The request's headers for the core, each read from the runtime when the API first asks for
/// it: most routes read two or three of [`API_REQUEST_HEADERS`](edgestack_core::app::API_REQUEST_HEADERS).
pub fn request_headers(request: &web_sys::Request) -> RequestHeaders {
    // The handle, not `Request.clone()` (which would tee the body).
    let request = Clone::clone(request);
    // A header the runtime cannot read is treated as absent, as a request without it.
    RequestHeaders::from_source(Rc::new(move |name: &str| request_header(&request, name).ok().flatten()))
}

/// Hands `src/edge.js` what every API response and data point carries — the version id and
/// the standard headers — once per wasm instance (the instance a panic resets hands them
/// again; they never change within an isolate).
pub fn prepare_isolate<'a>(version_id: &str, standard_headers: impl IntoIterator<Item = (&'a str, &'a str)>) {
    static PREPARED: OnceLock<()> = OnceLock::new();
    if PREPARED.get().is_some() {
        return;
    }
    // Kept only once it took: a value the Headers API refuses (say, a version tag outside
    // Latin-1) fails each response with 500 while it stands, and is tried again each request.
    if prepare_isolate_js(version_id, &header_lines(standard_headers)).is_ok() {
        let _ = PREPARED.set(());
    }
}

/// A runtime `Response` from a status, its own headers after the standard ones, and a body
/// (empty: none, as 204 and 304 need).
pub fn response<'a>(
    status: u16,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Result<web_sys::Response, JsValue> {
    respond(status, &header_lines(headers), (!body.is_empty()).then_some(body))
}

fn header_lines<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut lines = String::new();
    for (name, value) in headers {
        lines.push_str(name);
        lines.push('\n');
        lines.push_str(value);
        lines.push('\n');
    }
    lines
}
