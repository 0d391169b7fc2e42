//! `spawn_app()`: a fresh `wrangler dev` on free ports with its own state, killed on drop.

use std::time::Duration;

use local_stack::wrangler::{WranglerDev, WranglerDevOptions};
use serde_json::Value;

pub struct TestApp {
    pub dev: WranglerDev,
    agent: ureq::Agent,
}

pub struct TestResponse {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts the `{"error": {"code", "message"}}` shape and returns the code.
    pub fn error_code(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.text());
        let body = self.json();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "error without message: {body}");
        body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {body}")).to_string()
    }
}

/// Development configuration, as `.dev.vars` gives it locally.
pub fn spawn_app() -> TestApp {
    spawn_app_with(&[("EDGESTACK_ENV", "development")])
}

pub fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let options = WranglerDevOptions {
        vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..WranglerDevOptions::default()
    };
    let dev = WranglerDev::start(options).unwrap_or_else(|e| panic!("{e}"));
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    TestApp { dev, agent }
}

impl TestApp {
    pub fn get(&self, path: &str) -> TestResponse {
        self.request("GET", path, &[], None)
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> TestResponse {
        let mut builder = ureq::http::Request::builder().method(method).uri(self.dev.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body.map(<[u8]>::to_vec).unwrap_or_default()).unwrap();
        let mut response = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}\nwrangler log:\n{}", self.dev.log_tail()));
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
            .collect();
        let status = response.status().as_u16();
        let bodiless = method == "HEAD" || status == 204 || status == 304;
        let body = if bodiless {
            Vec::new()
        } else {
            response.body_mut().with_config().limit(10 * 1024 * 1024).read_to_vec().unwrap()
        };
        TestResponse { status, headers, body }
    }

    pub fn post_json(&self, path: &str, body: &str) -> TestResponse {
        self.request("POST", path, &[("content-type", "application/json")], Some(body.as_bytes()))
    }
}
