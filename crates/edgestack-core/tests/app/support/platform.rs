//! `Platform` for host tests: a simulated Worker isolate in one location, reaching in-process
//! libSQL clusters (`devdb::sim`: real SQLite, devdb's executor and changeset replication) over
//! a simulated network with the region lab's round trips, Workers KV as documented, rate
//! limits, service bindings and `waitUntil` — all on the virtual clock of [`super::runtime`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use devdb::sim::Cluster;
use edgestack_core::app::{
    self, ApiRequest, ApiResponse, BodyPlan, IsolateState, KvWrite, Limiter, Platform, RequestHeaders, ServiceRequest,
};
use edgestack_core::config::Config;
use edgestack_core::datapath::HranaAnswer;
use edgestack_core::datapath::round_trip_ms;
use edgestack_core::db::DbError;
use edgestack_core::health::VersionInfo;
use edgestack_core::region::{Location, RegionName};
use edgestack_core::routes::Method;
use edgestack_core::services::Service;
use edgestack_core::text::Form;

use super::kv::{self, Kv};
use super::runtime::Clock;

/// How a database endpoint misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndpointFault {
    /// Connection refused: an error at once.
    pub down: bool,
    /// HTTP 503 after the round trip.
    pub failing: bool,
    /// Added to each direction of the round trip.
    pub extra_latency_ms: f64,
}

/// Where a host name leads.
#[derive(Clone)]
struct Endpoint {
    database: String,
    replica: Option<String>,
    region: String,
}

/// Everything the simulated Workers share: databases, the network, KV namespaces, the log.
pub struct Net {
    pub clock: Clock,
    clusters: RefCell<BTreeMap<String, Cluster>>,
    endpoints: RefCell<BTreeMap<String, Endpoint>>,
    pub faults: RefCell<HashMap<String, EndpointFault>>,
    pub token: String,
    random: Cell<u64>,
    pub logs: RefCell<Vec<String>>,
    /// One-way latency of a KV operation.
    pub kv_latency_ms: Cell<f64>,
    /// Every rate limiter answers an error (a missing or failing binding).
    pub rate_limiter_down: Cell<bool>,
}

/// A KV read slower than this is abandoned for the database (as the worker does).
const KV_DEADLINE_MS: f64 = 200.0;
/// Rate-limit windows, as in wrangler.toml.
const RATE_LIMIT_PERIOD_MS: f64 = 60_000.0;

/// Each limiter's budget per window, as in wrangler.toml's `[[ratelimits]]`.
pub fn rate_limit(limiter: Limiter) -> usize {
    match limiter {
        Limiter::SignInPerClient => 30,
        Limiter::SignInPerDevice => 10,
        Limiter::SignUpPerClient => 5,
    }
}

impl Net {
    pub fn new(clock: Clock, seed: u64) -> Self {
        Self {
            clock,
            clusters: RefCell::default(),
            endpoints: RefCell::default(),
            faults: RefCell::default(),
            token: "sim-token".to_string(),
            random: Cell::new(seed),
            logs: RefCell::default(),
            kv_latency_ms: Cell::new(2.0),
            rate_limiter_down: Cell::new(false),
        }
    }

    /// Adds a database: its primary in `primary_region` and a replica per region in `replicas`,
    /// each with `replica_lag_ms` from before the migrations run. Returns the primary URL and the
    /// `LIBSQL_REPLICAS` value.
    pub fn add_database(
        &self,
        name: &str,
        folder: &std::path::Path,
        primary_region: &str,
        (replicas, replica_lag_ms): (&[&str], f64),
        migrations: &std::path::Path,
    ) -> (String, String) {
        let folder = folder.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let mut cluster = Cluster::new(&folder, replicas).unwrap();
        for replica in replicas {
            cluster.set_lag(replica, replica_lag_ms, self.clock.now_ms()).unwrap();
        }
        cluster.migrate(migrations, self.clock.now_ms()).unwrap();
        self.clusters.borrow_mut().insert(name.to_string(), cluster);
        let primary_host = format!("{name}-primary.sim");
        let endpoint = Endpoint { database: name.into(), replica: None, region: primary_region.into() };
        self.endpoints.borrow_mut().insert(primary_host.clone(), endpoint);
        let mut replica_urls = Vec::new();
        for region in replicas {
            let host = format!("{name}-{region}.sim");
            let endpoint =
                Endpoint { database: name.into(), replica: Some(region.to_string()), region: region.to_string() };
            self.endpoints.borrow_mut().insert(host.clone(), endpoint);
            replica_urls.push(format!("{region}=http://{host}"));
        }
        (format!("http://{primary_host}"), replica_urls.join(","))
    }

    /// Runs `change` on database `name`'s cluster (set lag, read indexes, count pipelines).
    pub fn cluster<T>(&self, name: &str, change: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut clusters = self.clusters.borrow_mut();
        change(clusters.get_mut(name).unwrap_or_else(|| panic!("no database {name}")))
    }

    /// The fault of the endpoint for `database`'s primary (`None`) or replica in `region`.
    pub fn set_fault(&self, database: &str, replica: Option<&str>, fault: EndpointFault) {
        let host = format!("{database}-{}.sim", replica.unwrap_or("primary"));
        self.faults.borrow_mut().insert(host, fault);
    }

    pub fn next_random(&self) -> u64 {
        // splitmix64: deterministic per seed, plenty for ids and tokens in tests.
        let state = self.random.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.random.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// One Hrana pipeline from a Worker in `from_region`, with the network's latency, faults and
    /// the caller's deadline, answered by the in-process cluster as devdb answers over HTTP:
    /// refusals as `{"message", "code"}` with their status, and the node's term
    /// (`x-devdb-term`).
    async fn pipeline(
        &self,
        from_region: &str,
        url: &str,
        token: &str,
        body: Vec<u8>,
        deadline_ms: f64,
    ) -> Result<HranaAnswer, DbError> {
        let host = url.trim_start_matches("http://").trim_end_matches('/').to_string();
        let endpoint = self.endpoints.borrow().get(&host).cloned();
        let Some(endpoint) = endpoint else {
            return Err(DbError::Unavailable(format!("cannot resolve {host}")));
        };
        let fault = self.faults.borrow().get(&host).copied().unwrap_or_default();
        if fault.down {
            return Err(DbError::Unavailable("connection refused".into()));
        }
        let one_way =
            f64::from(round_trip_ms(&region(from_region), &region(&endpoint.region))) / 2.0 + fault.extra_latency_ms;
        let timed_out = || DbError::Unavailable(format!("no answer within {deadline_ms} ms"));
        if one_way >= deadline_ms {
            self.clock.sleep(deadline_ms).await;
            return Err(timed_out());
        }
        self.clock.sleep(one_way).await;
        // The request arrived: the server runs it whether or not the client still waits.
        let answer = if fault.failing {
            Err((503, "FAULT_INJECTED".to_string()))
        } else if token != self.token {
            Err((401, "UNAUTHORIZED".to_string()))
        } else {
            let now = self.clock.now_ms();
            self.cluster(&endpoint.database, |cluster| cluster.pipeline(endpoint.replica.as_deref(), &body, now))
                .map_err(|refusal| (refusal.status, refusal.message))
        };
        let term = self.cluster(&endpoint.database, |cluster| cluster.term(endpoint.replica.as_deref()));
        if 2.0 * one_way > deadline_ms {
            self.clock.sleep(deadline_ms - one_way).await;
            return Err(timed_out());
        }
        self.clock.sleep(one_way).await;
        Ok(match answer {
            Ok(body) => HranaAnswer { status: 200, body, term },
            Err((status, message)) => {
                let code = message.split(':').next().unwrap_or_default().to_string();
                let body = serde_json::to_vec(&serde_json::json!({"message": message, "code": code})).unwrap();
                HranaAnswer { status, body, term }
            }
        })
    }
}

fn region(name: &str) -> RegionName {
    RegionName::parse(name).unwrap_or_else(|| panic!("bad region {name}"))
}

/// Cloudflare continent codes for the simulated locations.
fn continent(location: &str) -> &'static str {
    match location {
        "eu" => "EU",
        "ap" => "AS",
        _ => "NA",
    }
}

/// One deployed Worker's isolate in one location.
pub struct Worker {
    pub net: Rc<Net>,
    pub location: String,
    pub vars: RefCell<BTreeMap<String, String>>,
    pub isolate: Rc<IsolateState>,
    pub kv: Rc<RefCell<Kv>>,
    pub version: VersionInfo,
    /// Service bindings: the Workers this one reaches (same location).
    pub bindings: RefCell<BTreeMap<&'static str, Rc<Worker>>>,
    /// Attempts per `(limiter, key)` in this location (the binding counts per location).
    limits: RefCell<HashMap<(String, String), Vec<f64>>>,
    /// The request headers the API read, in order, for every request so far: on Workers each
    /// read is a call from wasm into the runtime (`RequestHeaders`).
    pub header_reads: Rc<RefCell<Vec<String>>>,
}

impl Worker {
    pub fn new(net: Rc<Net>, location: &str, vars: BTreeMap<String, String>, kv: Rc<RefCell<Kv>>) -> Self {
        Self {
            net,
            location: location.to_string(),
            vars: RefCell::new(vars),
            isolate: Rc::default(),
            kv,
            version: VersionInfo { id: "sim-version".into(), tag: "sim".into(), timestamp: String::new() },
            bindings: RefCell::default(),
            limits: RefCell::default(),
            header_reads: Rc::default(),
        }
    }

    pub fn config(&self) -> Result<Config, edgestack_core::config::ConfigError> {
        let vars = self.vars.borrow();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    pub fn set_var(&self, name: &str, value: &str) {
        self.vars.borrow_mut().insert(name.to_string(), value.to_string());
    }

    /// The request as the worker's HTTP edge builds it (`src/http.rs`): lower-case header
    /// names, the region from `cf` unless development (or a service) honours the override.
    pub fn api_request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> ApiRequest {
        let config = self.config().ok();
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        // As the worker's edge does: the headers the API reads, on first use.
        let fields = RequestHeaders::from_fields(headers);
        let reads = Rc::clone(&self.header_reads);
        let headers = RequestHeaders::from_source(Rc::new(move |name: &str| {
            reads.borrow_mut().push(name.to_string());
            fields.get(name).map(str::to_string)
        }));
        ApiRequest {
            method: Method::parse(method),
            path: path.to_string(),
            query: query.to_string(),
            region_override: ApiRequest::region_override(config.as_ref(), &headers),
            headers,
            body,
            origin: "https://edgestack.test".to_string(),
            now_ms: self.net.clock.now_ms() as i64,
            version: self.version.clone(),
        }
    }

    /// What this Worker answers, as the edge (src/http.rs) makes it: the body plan from the
    /// request's head first — a refusal before the body is looked at, no body for a route that
    /// takes none — then `app::handle`.
    pub async fn handle(&self, request: ApiRequest) -> ApiResponse {
        self.handle_uploaded_over(request, 0.0).await
    }

    /// As [`Self::handle`], for a body that takes `upload_ms` to arrive: the edge stamps the
    /// request (`now_ms`) when its head arrives and reads the body after (src/http.rs).
    pub async fn handle_uploaded_over(&self, mut request: ApiRequest, upload_ms: f64) -> ApiResponse {
        let config = self.config();
        let admitted = match app::body_plan(self, config.as_ref(), &request) {
            BodyPlan::Refuse(refusal) => return refusal,
            BodyPlan::Ignore(admitted) => {
                request.body.clear();
                admitted
            }
            BodyPlan::Read(admitted) => {
                self.net.clock.sleep(upload_ms).await;
                admitted
            }
        };
        app::handle(self, admitted, &request).await
    }

    fn kv_op<T>(&self, op: impl FnOnce(&mut Kv, f64) -> T) -> T {
        op(&mut self.kv.borrow_mut(), self.net.clock.now_ms())
    }
}

impl Platform for Worker {
    fn fill_random(&self, buffer: &mut [u8]) -> Result<(), String> {
        for chunk in buffer.chunks_mut(8) {
            let bytes = self.net.next_random().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }

    fn now_ms(&self) -> f64 {
        self.net.clock.now_ms()
    }

    fn isolate(&self) -> &IsolateState {
        &self.isolate
    }

    fn location(&self) -> Location {
        Location {
            continent: Some(continent(&self.location).to_string()),
            colo: Some(format!("SIM-{}", self.location)),
        }
    }

    fn normalize(&self, text: &str, form: Form) -> String {
        use unicode_normalization::UnicodeNormalization;
        match form {
            Form::Nfc => text.nfc().collect(),
            Form::Nfkc => text.nfkc().collect(),
        }
    }

    async fn send_pipeline(
        &self,
        url: &str,
        token: &str,
        body: Vec<u8>,
        deadline_ms: u32,
    ) -> Result<HranaAnswer, DbError> {
        self.net.pipeline(&self.location, url, token, body, f64::from(deadline_ms)).await
    }

    async fn kv_get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let latency = self.net.kv_latency_ms.get();
        if 2.0 * latency > KV_DEADLINE_MS {
            self.net.clock.sleep(KV_DEADLINE_MS).await;
            return Err(format!("no answer within {KV_DEADLINE_MS} ms"));
        }
        self.net.clock.sleep(latency).await;
        let values = keys.iter().map(|key| self.kv_op(|kv, now| kv.get(&self.location, key, now))).collect();
        self.net.clock.sleep(latency).await;
        values
    }

    fn kv_put_in_background(&self, write: KvWrite) {
        let (kv, net, location, isolate) =
            (self.kv.clone(), self.net.clone(), self.location.clone(), self.isolate.clone());
        let latency = self.net.kv_latency_ms.get();
        self.net.clock.spawn(async move {
            net.clock.sleep(f64::from(write.after_ms)).await;
            for attempt in 0..2 {
                if attempt > 0 {
                    net.clock.sleep(kv::WRITE_INTERVAL_MS).await;
                }
                let Some(value) = (write.value)(&isolate, net.clock.now_ms()) else { return };
                net.clock.sleep(latency).await;
                let outcome = kv.borrow_mut().put(&location, &write.key, value, write.ttl_seconds, net.clock.now_ms());
                match outcome {
                    Ok(()) => return,
                    Err(error) => net.logs.borrow_mut().push(format!("[{location}] {error}")),
                }
            }
        });
    }

    async fn within_rate_limit(&self, limiter: Limiter, key: &str) -> Result<bool, String> {
        if self.net.rate_limiter_down.get() {
            return Err("rate limiter unavailable (injected)".to_string());
        }
        let limit = rate_limit(limiter);
        let now = self.now_ms();
        let mut limits = self.limits.borrow_mut();
        let attempts = limits.entry((format!("{limiter:?}"), key.to_string())).or_default();
        attempts.retain(|at| now - at < RATE_LIMIT_PERIOD_MS);
        attempts.push(now);
        Ok(attempts.len() <= limit)
    }

    async fn sleep(&self, milliseconds: u32) {
        self.net.clock.sleep(f64::from(milliseconds)).await;
    }

    fn send_pipeline_in_background(&self, url: &str, token: &str, body: Vec<u8>) {
        let (net, location, url, token) = (self.net.clone(), self.location.clone(), url.to_string(), token.to_string());
        self.net.clock.spawn(async move {
            match net.pipeline(&location, &url, &token, body, 5_000.0).await {
                Ok(answer) if answer.status == 200 => {}
                Ok(answer) => net.logs.borrow_mut().push(format!("background pipeline answered {}", answer.status)),
                Err(error) => net.logs.borrow_mut().push(format!("background pipeline failed: {error}")),
            }
        });
    }

    fn log(&self, message: &str) {
        self.net.logs.borrow_mut().push(format!("[{}] {message}", self.location));
    }

    async fn call_service(
        &self,
        service: Service,
        request: ServiceRequest,
        deadline_ms: u32,
    ) -> Result<ApiResponse, String> {
        let binding = service.binding().ok_or_else(|| format!("{} has no binding", service.as_str()))?;
        let target = self.bindings.borrow().get(binding).cloned().ok_or_else(|| format!("no {binding} binding"))?;
        let path_and_query = request.url.splitn(4, '/').nth(3).map(|rest| format!("/{rest}")).unwrap_or_default();
        let clock = self.net.clock.clone();
        // Boxed as `dyn`: the target may itself call services, and a future cannot contain itself.
        let call: std::pin::Pin<Box<dyn std::future::Future<Output = ApiResponse> + '_>> = Box::pin(async move {
            // A service binding runs in the same location: a fraction of a millisecond each way.
            clock.sleep(0.5).await;
            // Made on arrival, as the target's edge makes it: its clock reads the time it
            // arrived, not the time the caller sent it.
            let api_request =
                target.api_request(request.method.as_str(), &path_and_query, &request.headers, request.body);
            let response = target.handle(api_request).await;
            clock.sleep(0.5).await;
            response
        });
        // Past the deadline the runtime cancels the call (`AbortSignal.timeout`): the other
        // Worker's request ends where it stands, as this future is dropped.
        let deadline = Box::pin(self.net.clock.sleep(f64::from(deadline_ms)));
        match futures::future::select(call, deadline).await {
            futures::future::Either::Left((response, _)) => Ok(response),
            futures::future::Either::Right(_) => Err(format!("no answer within {deadline_ms} ms")),
        }
    }
}
