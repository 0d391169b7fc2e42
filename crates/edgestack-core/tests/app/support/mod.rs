//! The app in-process: `Stack` deploys simulated Workers (one Worker, or entry + accounts +
#![allow(dead_code)] // Each test binary uses part of the support kit.
//! notes) in one or more locations, each database a primary with replicas, and runs requests
//! through `app::handle` on a virtual clock. `Client` is one browser: a cookie jar and a region.

pub mod direct;
pub mod kv;
pub mod platform;
pub mod runtime;
pub mod schedule;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use edgestack_core::app::ApiResponse;
use edgestack_core::services::identity::{IdentitySigner, encode_key};
use serde_json::Value;

pub use direct::{PASSWORD, each_shape, one_user_near_and_far, signed_up_user};
pub use kv::Kv;
pub use platform::{EndpointFault, Net, Worker};
pub use runtime::Runtime;

pub fn migrations(folder: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(folder)
}

/// The deployment shape, as `EDGESTACK_SERVICE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Monolith,
    Services,
}

/// How to build a stack.
#[derive(Debug, Clone)]
pub struct Options {
    pub shape: Shape,
    /// Regions with a replica of each database (the primaries are in `na`).
    pub replicas: Vec<&'static str>,
    /// Every replica's lag from the start, the migrations included: above 0, replicas that have
    /// not received even the schema yet.
    pub replica_lag_ms: f64,
    /// Locations with their own isolates; each gets the Workers of the shape. The first one is
    /// where clients without a location go.
    pub locations: Vec<&'static str>,
    /// Extra vars for every Worker.
    pub vars: Vec<(&'static str, String)>,
    /// KV propagation between locations.
    pub kv_propagation_ms: f64,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shape: Shape::Monolith,
            replicas: vec!["eu", "ap"],
            replica_lag_ms: 0.0,
            locations: vec!["na"],
            vars: Vec::new(),
            kv_propagation_ms: 60_000.0,
            seed: 1,
        }
    }
}

/// The front Worker of one location: the single Worker, or the entry.
pub struct Location {
    pub front: Rc<Worker>,
    /// By service name; only the services shape has any.
    pub services: BTreeMap<&'static str, Rc<Worker>>,
}

pub struct Stack {
    pub rt: Runtime,
    pub net: Rc<Net>,
    pub options: Options,
    pub locations: BTreeMap<&'static str, Location>,
    /// KV namespaces by name: `CACHE` of the single Worker or of `notes`.
    pub kv: Rc<RefCell<Kv>>,
    _folder: tempfile::TempDir,
}

impl Stack {
    pub fn monolith() -> Self {
        Self::new(Options::default())
    }

    pub fn services() -> Self {
        Self::new(Options { shape: Shape::Services, ..Options::default() })
    }

    pub fn new(options: Options) -> Self {
        let rt = Runtime::default();
        let net = Rc::new(Net::new(rt.clock(), options.seed));
        // Memory-backed where the machine has it: the clusters' files are throwaway.
        let shm = std::path::Path::new("/dev/shm");
        let folder = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
        let kv = Rc::new(RefCell::new(Kv::default()));
        kv.borrow_mut().propagation_ms = options.kv_propagation_ms;
        let database_vars = |name: &str, migrations_folder: &str| -> Vec<(&'static str, String)> {
            let (primary, replicas) = net.add_database(
                name,
                folder.path(),
                "na",
                (&options.replicas, options.replica_lag_ms),
                &migrations(migrations_folder),
            );
            vec![
                ("LIBSQL_PRIMARY_URL", primary),
                ("LIBSQL_AUTH_TOKEN", net.token.clone()),
                ("LIBSQL_REPLICAS", replicas),
                ("LIBSQL_PRIMARY_REGION", "na".to_string()),
            ]
        };
        let common: Vec<(&'static str, String)> =
            [("EDGESTACK_ENV", "development".to_string()), ("CONSISTENCY_KEY", "sim-consistency-key".to_string())]
                .into_iter()
                .chain(options.vars.iter().cloned())
                .collect();
        let vars = |extra: Vec<(&'static str, String)>| -> BTreeMap<String, String> {
            common.iter().cloned().chain(extra).map(|(name, value)| (name.to_string(), value)).collect()
        };
        let mut locations = BTreeMap::new();
        match options.shape {
            Shape::Monolith => {
                let database = database_vars("main", "migrations");
                for location in &options.locations {
                    let front = Rc::new(Worker::new(net.clone(), location, vars(database.clone()), kv.clone()));
                    locations.insert(*location, Location { front, services: BTreeMap::new() });
                }
            }
            Shape::Services => {
                let signer = IdentitySigner::from_seed(&[7; 32]);
                let public_key = encode_key(&signer.verifying_key());
                let accounts_db = database_vars("accounts", "migrations/accounts");
                let notes_db = database_vars("notes", "migrations/notes");
                for location in &options.locations {
                    let service = |name: &str, mut extra: Vec<(&'static str, String)>| {
                        extra.push(("EDGESTACK_SERVICE", name.to_string()));
                        Rc::new(Worker::new(net.clone(), location, vars(extra), kv.clone()))
                    };
                    let mut accounts_vars = accounts_db.clone();
                    accounts_vars.push(("IDENTITY_SIGNING_KEY", encode_key(&[7; 32])));
                    let accounts = service("accounts", accounts_vars);
                    let mut notes_vars = notes_db.clone();
                    notes_vars.push(("IDENTITY_PUBLIC_KEY", public_key.clone()));
                    let notes = service("notes", notes_vars);
                    let entry = service("entry", vec![("IDENTITY_PUBLIC_KEY", public_key.clone())]);
                    entry.bindings.borrow_mut().insert("ACCOUNTS", accounts.clone());
                    entry.bindings.borrow_mut().insert("NOTES", notes.clone());
                    accounts.bindings.borrow_mut().insert("NOTES", notes.clone());
                    let services = BTreeMap::from([("accounts", accounts), ("notes", notes)]);
                    locations.insert(*location, Location { front: entry, services });
                }
            }
        }
        Self { rt, net, options, locations, kv, _folder: folder }
    }

    /// The database that holds notes: `main`, or `notes` in the services shape.
    pub fn notes_db(&self) -> &'static str {
        if self.options.shape == Shape::Services { "notes" } else { "main" }
    }

    /// The database that holds accounts: `main`, or `accounts` in the services shape.
    pub fn accounts_db(&self) -> &'static str {
        if self.options.shape == Shape::Services { "accounts" } else { "main" }
    }

    /// A browser in `location` (its requests reach that location's front Worker) that names
    /// `region` in the development region header, as the local stack's clients do.
    pub fn client(&self, location: &'static str) -> Client {
        let front = self.locations.get(location).unwrap_or_else(|| panic!("no location {location}")).front.clone();
        Client { front, cookies: Rc::default(), region: None, address: next_client_address() }
    }

    /// Another isolate of every Worker of `location`, as a busy location runs several: its own
    /// memory (primary record, cache tier, circuit breakers), the location's KV view, and its
    /// service bindings to the other new isolates.
    pub fn another_isolate(&self, location: &str) -> Location {
        let existing = self.locations.get(location).unwrap_or_else(|| panic!("no location {location}"));
        let originals: Vec<Rc<Worker>> =
            std::iter::once(existing.front.clone()).chain(existing.services.values().cloned()).collect();
        let copies: Vec<Rc<Worker>> = originals
            .iter()
            .map(|worker| {
                let vars = worker.vars.borrow().clone();
                Rc::new(Worker::new(self.net.clone(), &worker.location, vars, worker.kv.clone()))
            })
            .collect();
        for (original, copy) in originals.iter().zip(&copies) {
            for (binding, target) in original.bindings.borrow().iter() {
                let n = originals.iter().position(|o| Rc::ptr_eq(o, target)).expect("a binding within the location");
                copy.bindings.borrow_mut().insert(binding, copies[n].clone());
            }
        }
        let services = existing.services.keys().zip(&copies[1..]).map(|(name, copy)| (*name, copy.clone())).collect();
        Location { front: copies[0].clone(), services }
    }

    /// The first location's browser naming `region` in the override header.
    pub fn client_in_region(&self, region: &'static str) -> Client {
        let mut client = self.client(self.options.locations[0]);
        client.region = Some(region);
        client
    }

    /// Runs one request to completion.
    pub fn send(&mut self, request: impl Future<Output = Response> + 'static) -> Response {
        self.rt.run(request)
    }

    /// Sets replica `region`'s lag on database `database` from now on.
    pub fn set_lag(&self, database: &str, region: &str, lag_ms: f64) {
        let now_ms = self.rt.clock().now_ms();
        self.net.cluster(database, |cluster| cluster.set_lag(region, lag_ms, now_ms)).unwrap();
    }

    /// From now on replica `region` of `database` receives what the primary committed while
    /// it answers each pipeline's last statement: the rows miss it, the index names it
    /// (`devdb::sim::Cluster::set_replication_during_reads`, sqld's labelling at its worst).
    pub fn replicate_during_reads(&self, database: &str, region: &str) {
        self.net.cluster(database, |cluster| cluster.set_replication_during_reads(region, true)).unwrap();
    }

    /// Lets `ms` of simulated time pass (replication, TTLs, background work).
    pub fn advance(&mut self, ms: f64) {
        self.rt.advance(ms);
    }

    pub fn now_ms(&self) -> f64 {
        self.net.clock.now_ms()
    }
}

/// One browser: cookies as the browser would keep them (`Max-Age=0` deletes), a region header,
/// and its own address (`cf-connecting-ip`, as the edge sets it; none for a service called
/// directly), so per-client rate limits count each browser apart unless a test names one.
#[derive(Clone)]
pub struct Client {
    front: Rc<Worker>,
    cookies: Rc<RefCell<BTreeMap<String, String>>>,
    pub region: Option<&'static str>,
    pub address: String,
}

/// A new documentation-range address (RFC 5737) per browser.
fn next_client_address() -> String {
    thread_local! {
        static NEXT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let n = NEXT.with(|next| {
        next.set(next.get() + 1);
        next.get()
    });
    format!("198.51.{}.{}", (n / 250) % 250, n % 250 + 1)
}

/// A request a `Client` is about to send.
pub struct Call {
    client: Client,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// How long the body takes to arrive after the head.
    upload_ms: f64,
}

impl Call {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn json(self, body: Value) -> Self {
        let mut call = self.header("content-type", "application/json");
        call.body = serde_json::to_vec(&body).unwrap();
        call
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// The body arrives `ms` after the request's head (a slow uplink).
    pub fn uploaded_over(mut self, ms: f64) -> Self {
        self.upload_ms = ms;
        self
    }

    /// Sends it; the cookie jar takes the answer's `Set-Cookie` headers.
    pub async fn send(self) -> Response {
        let Call { client, method, path, mut headers, body, upload_ms } = self;
        let cookies = client.cookie_header();
        if !cookies.is_empty() && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("cookie")) {
            headers.push(("cookie".to_string(), cookies));
        }
        if let Some(region) = client.region {
            headers.push(("x-edgestack-region".to_string(), region.to_string()));
        }
        if !client.address.is_empty() && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("cf-connecting-ip"))
        {
            headers.push(("cf-connecting-ip".to_string(), client.address.clone()));
        }
        let request = client.front.api_request(method, &path, &headers, body);
        let response = client.front.handle_uploaded_over(request, upload_ms).await;
        client.keep_cookies(&response);
        Response(response)
    }
}

impl Client {
    fn call(&self, method: &'static str, path: &str) -> Call {
        // The browser's same-origin proof for state changes (CSRF rule): the client header.
        let headers = vec![("x-edgestack-client".to_string(), "test".to_string())];
        Call { client: self.clone(), method, path: path.to_string(), headers, body: Vec::new(), upload_ms: 0.0 }
    }

    pub fn get(&self, path: &str) -> Call {
        self.call("GET", path)
    }

    pub fn post(&self, path: &str) -> Call {
        self.call("POST", path)
    }

    pub fn put(&self, path: &str) -> Call {
        self.call("PUT", path)
    }

    pub fn patch(&self, path: &str) -> Call {
        self.call("PATCH", path)
    }

    pub fn delete(&self, path: &str) -> Call {
        self.call("DELETE", path)
    }

    /// The same browser reaching `front` (another isolate or location), with the same cookies.
    pub fn through(&self, front: Rc<Worker>) -> Client {
        Client { front, ..self.clone() }
    }

    /// The same browser seen from another region (same cookies).
    pub fn in_region(&self, region: &'static str) -> Client {
        Client { region: Some(region), ..self.clone() }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.borrow().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies.borrow_mut().insert(name.to_string(), value.to_string());
    }

    pub fn forget_cookie(&self, name: &str) {
        self.cookies.borrow_mut().remove(name);
    }

    pub fn cookie_header(&self) -> String {
        self.cookies.borrow().iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&self, response: &ApiResponse) {
        let mut cookies = self.cookies.borrow_mut();
        for (_, set_cookie) in response.headers.iter().filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie")) {
            let Some((name, value)) = set_cookie.split(';').next().and_then(|pair| pair.split_once('=')) else {
                continue;
            };
            if set_cookie.contains("Max-Age=0") {
                cookies.remove(name.trim());
            } else {
                cookies.insert(name.trim().to_string(), value.trim().to_string());
            }
        }
    }
}

/// An answer with the assertions tests need.
#[derive(Debug, Clone)]
pub struct Response(pub ApiResponse);

impl Response {
    pub fn status(&self) -> u16 {
        self.0.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.0.header(name)
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.0.headers.iter().filter(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.0.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `{"error": {"code", "message"}}` code, after checking the shape.
    pub fn error_code(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.text());
        let body = self.json();
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {body}");
        body["error"]["code"].as_str().unwrap_or_else(|| panic!("no code: {body}")).to_string()
    }

    /// `desc` values of the `Server-Timing` entries named `metric`, in order.
    pub fn timing(&self, metric: &str) -> Vec<String> {
        let timing = self.header("server-timing").unwrap_or_else(|| panic!("no Server-Timing: {}", self.text()));
        timing
            .split(',')
            .filter_map(|entry| {
                let mut parts = entry.trim().split(';');
                (parts.next() == Some(metric)).then(|| {
                    parts.find_map(|p| p.trim().strip_prefix("desc=")).unwrap_or_default().trim_matches('"').to_string()
                })
            })
            .collect()
    }

    pub fn cache_status(&self) -> String {
        self.timing("cache").into_iter().next().unwrap_or_default()
    }

    pub fn db_targets(&self) -> Vec<String> {
        self.timing("db")
    }

    pub fn db_requests(&self) -> u64 {
        self.header("x-edgestack-db-requests").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count"))
    }
}

/// Signs `client` up as `email` (password `correct horse battery`); it is then signed in.
pub fn signed_up(stack: &mut Stack, client: &Client, email: &str) {
    let call =
        client.post("/api/accounts").json(serde_json::json!({"email": email, "password": "correct horse battery"}));
    let response = stack.send(call.send());
    assert_eq!(response.status(), 201, "{}", response.text());
}
