//! One simulated user's HTTP client: its own cookies (kept by hand, since the API's cookies are
//! `Secure` and the lab speaks plain http to 127.0.0.1), and what each answer reports about the
//! data path (`Server-Timing`, `x-edgestack-db-requests`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Where a cacheable answer came from (`Server-Timing: cache;desc=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    HitMemory,
    HitKv,
    Miss,
    Bypass,
    /// The route is not cacheable.
    None,
}

impl CacheOutcome {
    fn parse(description: &str) -> Option<Self> {
        Some(match description {
            "hit-memory" => Self::HitMemory,
            "hit-kv" => Self::HitKv,
            "miss" => Self::Miss,
            "bypass" => Self::Bypass,
            "none" => Self::None,
            _ => return None,
        })
    }
}

/// One database round trip as the worker reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundTrip {
    pub target: String,
    pub ms: Option<f64>,
}

/// What one answer said about how it was served. `None` fields: the worker did not say.
#[derive(Debug, Clone, Default)]
pub struct DataPathReport {
    pub db_requests: Option<u32>,
    pub cache: Option<CacheOutcome>,
    /// `db;desc=<target>;dur=<ms>` entries in order (`primary`, `replica-eu`, …).
    pub db_round_trips: Vec<RoundTrip>,
    /// `total;dur=<ms>`: time spent in the worker.
    pub worker_ms: Option<f64>,
    /// Whether `Server-Timing` was present at all (distinguishes "no db entries" from "unknown").
    pub server_timing: bool,
}

impl DataPathReport {
    /// Reads the headers the worker adds per docs/edge-data-path.md.
    pub fn from_headers<'a>(
        db_requests: Option<&str>,
        server_timing: impl IntoIterator<Item = &'a str>,
    ) -> DataPathReport {
        let mut report =
            DataPathReport { db_requests: db_requests.and_then(|v| v.trim().parse().ok()), ..Default::default() };
        for header in server_timing {
            report.server_timing = true;
            for metric in header.split(',') {
                let mut parts = metric.split(';').map(str::trim);
                let name = parts.next().unwrap_or_default();
                let parameters: Vec<(&str, &str)> = parts
                    .filter_map(|parameter| parameter.split_once('='))
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .collect();
                let parameter = |wanted: &str| {
                    parameters
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(wanted))
                        .map(|(_, v)| v.trim_matches('"'))
                };
                let duration = parameter("dur").and_then(|ms| ms.parse::<f64>().ok());
                match (name, parameter("desc")) {
                    ("cache", Some(description)) => report.cache = CacheOutcome::parse(description),
                    ("db", Some(target)) => {
                        report.db_round_trips.push(RoundTrip { target: target.to_string(), ms: duration })
                    }
                    ("total", _) => report.worker_ms = duration,
                    _ => {}
                }
            }
        }
        report
    }
}

/// One answer as the workload sees it.
pub struct Answer {
    pub status: u16,
    pub latency: Duration,
    pub report: DataPathReport,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub struct UserClient {
    base_url: String,
    agent: ureq::Agent,
    /// name → value of every cookie the API set and has not cleared.
    cookies: BTreeMap<String, String>,
    /// The address the edge would name for this user (`cf-connecting-ip`, which `wrangler dev`
    /// passes on): each simulated user is its own client, as per-client limits (sign-ups: 5 a
    /// minute per address) expect of real browsers.
    address: String,
}

/// A documentation-range address (RFC 5737) no other client of this process has.
fn next_address() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("198.51.{}.{}", (n / 250) % 250, n % 250 + 1)
}

impl UserClient {
    pub fn new(base_url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .build()
            .into();
        Self { base_url: base_url.to_string(), agent, cookies: BTreeMap::new(), address: next_address() }
    }

    /// From now on this client speaks from another address (a benchmark signing many users up
    /// through one connection).
    pub fn move_to_new_address(&mut self) {
        self.address = next_address();
    }

    pub fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send("GET", path, None)
    }

    /// A state-changing request, with the header that stands in for same-origin proof.
    pub fn write(&mut self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, String> {
        self.send(method, path, body)
    }

    fn send(&mut self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base_url);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if method != "GET" {
            request = request.header("x-edgestack-client", "1");
        }
        request = request.header("cf-connecting-ip", &self.address);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if !self.cookies.is_empty() {
            let cookie: Vec<String> = self.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect();
            request = request.header("cookie", cookie.join("; "));
        }
        let request = request
            .body(body.map(|value| value.to_string().into_bytes()).unwrap_or_default())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let started = Instant::now();
        let mut response = self.agent.run(request).map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else {
            response.body_mut().with_config().limit(4 * 1024 * 1024).read_to_vec().map_err(|e| e.to_string())?
        };
        // The user waits for the whole answer, body included.
        let latency = started.elapsed();
        let headers = response.headers();
        let texts = |name: &str| -> Vec<String> {
            headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).map(String::from).collect()
        };
        for set_cookie in texts("set-cookie") {
            self.remember(&set_cookie);
        }
        let server_timing = texts("server-timing");
        let db_requests = texts("x-edgestack-db-requests");
        let report = DataPathReport::from_headers(
            db_requests.first().map(String::as_str),
            server_timing.iter().map(String::as_str),
        );
        Ok(Answer { status, latency, report, body })
    }

    /// Keeps or forgets a cookie as a browser would (cleared: empty value or `Max-Age=0`).
    fn remember(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else { return };
        let expired = parts.any(|attribute| {
            attribute.split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("max-age") && value.trim().parse::<i64>().is_ok_and(|age| age <= 0)
            })
        });
        if value.is_empty() || expired {
            self.cookies.remove(name);
        } else {
            self.cookies.insert(name.to_string(), value.to_string());
        }
    }

    #[cfg(test)]
    pub fn has_cookie(&self, name: &str) -> bool {
        self.cookies.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_data_path_headers() {
        let report = DataPathReport::from_headers(
            Some("2"),
            ["cache;desc=miss, db;desc=replica-eu;dur=6.1, db;desc=primary;dur=81.0, total;dur=90.2"],
        );
        assert_eq!(report.db_requests, Some(2));
        assert_eq!(report.cache, Some(CacheOutcome::Miss));
        let trips = [
            RoundTrip { target: "replica-eu".into(), ms: Some(6.1) },
            RoundTrip { target: "primary".into(), ms: Some(81.0) },
        ];
        assert_eq!(report.db_round_trips, trips);
        assert_eq!(report.worker_ms, Some(90.2));
        assert!(report.server_timing);
    }

    #[test]
    fn missing_headers_are_unknown_not_zero() {
        let report = DataPathReport::from_headers(None, []);
        assert_eq!(report.db_requests, None);
        assert_eq!(report.cache, None);
        assert_eq!(report.worker_ms, None);
        assert!(!report.server_timing);
        let quoted = DataPathReport::from_headers(Some("x"), ["cache;desc=\"hit-kv\"", "total;dur=1"]);
        assert_eq!(quoted.cache, Some(CacheOutcome::HitKv));
        assert_eq!(quoted.db_requests, None);
    }

    #[test]
    fn keeps_and_clears_cookies_by_hand() {
        let mut client = UserClient::new("http://127.0.0.1:1");
        client.remember("__Host-edgestack_session=abc; Path=/; Secure; HttpOnly; SameSite=Lax");
        client.remember("__Host-edgestack_consistency=v1.42.sig; Path=/; Secure; HttpOnly; Max-Age=60");
        assert!(client.has_cookie("__Host-edgestack_session"));
        assert!(client.has_cookie("__Host-edgestack_consistency"));
        client.remember("__Host-edgestack_session=; Path=/; Max-Age=0");
        assert!(!client.has_cookie("__Host-edgestack_session"));
        client.remember("__Host-edgestack_consistency=gone; Max-Age=0");
        assert!(!client.has_cookie("__Host-edgestack_consistency"));
    }
}
