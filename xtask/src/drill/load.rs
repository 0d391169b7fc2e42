//! The drill's steady load: in each region a writer (creates a note, reads it back, and reads
//! back one it wrote a few notes before) and a reader (the public feed and a public note),
//! each with its own cookies and client address. Every request becomes a [`Sample`] with its
//! start and end on the run's clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Result;

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `POST /api/notes` by a writer.
    Write,
    /// `GET /api/notes/{id}` of a note the same writer had been told was written.
    ReadOwn,
    /// `GET /api/public/notes` or a public note, by an anonymous reader.
    ReadPublic,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub region: &'static str,
    pub op: Op,
    /// Seconds since the run's start.
    pub started_s: f64,
    pub done_s: f64,
    /// `None`: no answer (connection failed or timed out).
    pub status: Option<u16>,
    /// The note written (a 201) or read back.
    pub note: Option<String>,
}

/// One simulated browser: a region, an address, cookies kept by hand (the API's cookies are
/// `Secure`, the drill speaks plain http to 127.0.0.1).
pub struct Client {
    base_url: String,
    region: &'static str,
    address: String,
    agent: ureq::Agent,
    cookies: BTreeMap<String, String>,
}

impl Client {
    pub fn new(base_url: &str, region: &'static str, address: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .max_redirects(0)
            .build()
            .into();
        Self { base_url: base_url.to_string(), region, address, agent, cookies: BTreeMap::new() }
    }

    /// Status and body, or `Err` when no answer came.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::result::Result<(u16, Vec<u8>), String> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url))
            .header("x-edgestack-region", self.region)
            .header("cf-connecting-ip", &self.address);
        if method != "GET" {
            request = request.header("x-edgestack-client", "1").header("content-type", "application/json");
        }
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect();
            request = request.header("cookie", cookies.join("; "));
        }
        let request = request
            .body(body.map(|value| value.to_string().into_bytes()).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let mut response = self.agent.run(request).map_err(|e| format!("{method} {path}: {e}"))?;
        for set_cookie in response.headers().get_all("set-cookie").iter().filter_map(|value| value.to_str().ok()) {
            let mut parts = set_cookie.split(';');
            let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else { continue };
            if value.is_empty() || parts.any(|attribute| attribute.trim().eq_ignore_ascii_case("max-age=0")) {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap_or_default();
        Ok((status, body))
    }
}

/// A documentation-range address (RFC 5737) per client: per-address limits (sign-ups) count
/// each simulated user apart, as they would real browsers.
fn address(n: usize) -> String {
    format!("203.0.113.{}", n % 250 + 1)
}

/// The load's users, signed up and ready: a writer per region, and a reader per region with
/// the public note it reads.
pub struct Users {
    writers: Vec<Client>,
    readers: Vec<Client>,
    public_note: String,
}

pub fn prepare(base_url: &str, run: u64) -> Result<Users> {
    let mut writers = Vec::new();
    for (n, region) in super::stack::REGIONS.into_iter().enumerate() {
        let mut writer = Client::new(base_url, region, address(n));
        let email = format!("drill-{run}-{region}@example.com");
        let (status, body) = writer.send(
            "POST",
            "/api/accounts",
            Some(&json!({"email": email, "password": "failover drill password"})),
        )?;
        if status != 201 {
            return Err(format!("sign-up in {region} answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        writers.push(writer);
    }
    let author = writers.first_mut().ok_or("no writer")?;
    let public_note = create_note(author, "the public note the readers read")?.ok_or("the public note was refused")?;
    let (status, _) = author.send("PUT", &format!("/api/notes/{public_note}/publication"), None)?;
    if status != 200 {
        return Err(format!("publishing answered {status}"));
    }
    let readers = super::stack::REGIONS
        .into_iter()
        .enumerate()
        .map(|(n, region)| Client::new(base_url, region, address(10 + n)))
        .collect();
    Ok(Users { writers, readers, public_note })
}

fn create_note(client: &mut Client, title: &str) -> std::result::Result<Option<String>, String> {
    let (status, body) = client.send("POST", "/api/notes", Some(&json!({"title": title, "body": ""})))?;
    let id = serde_json::from_slice::<Value>(&body).ok().and_then(|body| body["note"]["id"].as_str().map(String::from));
    Ok(if status == 201 { id } else { None })
}

/// The running load: its threads, and the samples they collect.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Load {
    pub fn start(users: Users, clock: Instant, think: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for writer in users.writers {
            let (stop, samples) = (stop.clone(), samples.clone());
            threads.push(std::thread::spawn(move || write_loop(writer, clock, think, &stop, &samples)));
        }
        for reader in users.readers {
            let (stop, samples, note) = (stop.clone(), samples.clone(), users.public_note.clone());
            threads.push(std::thread::spawn(move || read_loop(reader, &note, clock, think, &stop, &samples)));
        }
        Self { stop, threads, samples }
    }

    /// Stops the users after their current request and returns every sample, by start time.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        let mut samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner));
        samples.sort_by(|a, b| a.started_s.total_cmp(&b.started_s));
        samples
    }
}

/// Sends one request and records it.
fn timed(
    client: &mut Client,
    clock: Instant,
    op: Op,
    method: &str,
    path: &str,
    body: Option<&Value>,
    samples: &Mutex<Vec<Sample>>,
) -> (Option<u16>, Vec<u8>) {
    let started_s = clock.elapsed().as_secs_f64();
    let answer = client.send(method, path, body);
    let done_s = clock.elapsed().as_secs_f64();
    let (status, body) = match answer {
        Ok((status, body)) => (Some(status), body),
        Err(_) => (None, Vec::new()),
    };
    let note = match op {
        Op::Write => serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(|_| status == Some(201))
            .and_then(|body| body["note"]["id"].as_str().map(String::from)),
        Op::ReadOwn => path.rsplit('/').next().map(String::from),
        Op::ReadPublic => None,
    };
    let sample = Sample { region: client.region, op, started_s, done_s, status, note };
    samples.lock().unwrap_or_else(PoisonError::into_inner).push(sample);
    (status, body)
}

fn write_loop(mut client: Client, clock: Instant, think: Duration, stop: &AtomicBool, samples: &Mutex<Vec<Sample>>) {
    let mut acknowledged: Vec<String> = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let title = json!({"title": format!("{} {n}", client.region), "body": ""});
        let (status, body) = timed(&mut client, clock, Op::Write, "POST", "/api/notes", Some(&title), samples);
        if status == Some(201)
            && let Some(id) =
                serde_json::from_slice::<Value>(&body).ok().and_then(|b| b["note"]["id"].as_str().map(String::from))
        {
            acknowledged.push(id);
        }
        // The write just acknowledged, and one from a few writes before: both must be seen.
        let to_read: Vec<String> =
            [acknowledged.last(), acknowledged.len().checked_sub(4).and_then(|i| acknowledged.get(i))]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
        for id in to_read {
            timed(&mut client, clock, Op::ReadOwn, "GET", &format!("/api/notes/{id}"), None, samples);
        }
        std::thread::sleep(think);
    }
}

fn read_loop(
    mut client: Client,
    public_note: &str,
    clock: Instant,
    think: Duration,
    stop: &AtomicBool,
    samples: &Mutex<Vec<Sample>>,
) {
    let note_path = format!("/api/public/notes/{public_note}");
    while !stop.load(Ordering::Relaxed) {
        timed(&mut client, clock, Op::ReadPublic, "GET", "/api/public/notes", None, samples);
        timed(&mut client, clock, Op::ReadPublic, "GET", &note_path, None, samples);
        std::thread::sleep(think);
    }
}
