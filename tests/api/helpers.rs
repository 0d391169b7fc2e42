//! `spawn_app()`: fresh local libSQL databases (migrated) and a fresh `wrangler dev` on free
//! ports, all killed on drop, in the shape `EDGESTACK_SHAPE` names: `monolith` (one Worker,
//! one database; the default) or `services` (entry, accounts and notes Workers, a database
//! each). `TestClient`: one user's cookie jar.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use local_stack::devdb::DevDb;
use local_stack::services::{ACCOUNTS_MIGRATIONS, NOTES_MIGRATIONS, ServiceVars};
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};
use serde_json::{Value, json};

pub struct TestApp {
    // Declared first so wrangler stops before its databases.
    pub dev: WranglerDev,
    /// Replicas by region, in the order given to `spawn_app_with_replicas`.
    pub replicas: Vec<(String, DevDb)>,
    /// The single Worker's database; in the services shape, the accounts database.
    pub db: DevDb,
    /// The services shape: the notes database.
    pub notes_db: Option<DevDb>,
    agent: ureq::Agent,
    _configs: Option<tempfile::TempDir>,
}

/// Which shape `spawn_app` starts.
pub fn services_shape() -> bool {
    match std::env::var("EDGESTACK_SHAPE").as_deref() {
        Ok("services") => true,
        Ok("monolith") | Err(_) => false,
        Ok(other) => panic!("EDGESTACK_SHAPE must be `monolith` or `services`, not `{other}`"),
    }
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

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts the `{"error": {"code", "message"}}` shape and returns the code.
    /// The `db;desc=<target>` entries of `Server-Timing`, in order.
    pub fn db_targets(&self) -> Vec<String> {
        self.server_timing_entries("db")
    }

    /// `cache;desc=<status>` from `Server-Timing`.
    pub fn cache_status(&self) -> String {
        self.server_timing_entries("cache").into_iter().next().unwrap_or_default()
    }

    fn server_timing_entries(&self, metric: &str) -> Vec<String> {
        let timing = self.header("server-timing").unwrap_or_else(|| panic!("no Server-Timing: {}", self.text()));
        timing
            .split(',')
            .filter_map(|entry| {
                let mut parts = entry.trim().split(';');
                (parts.next() == Some(metric))
                    .then(|| parts.find_map(|p| p.trim().strip_prefix("desc=")).unwrap_or_default().to_string())
            })
            .collect()
    }

    pub fn error_code(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.text());
        let body = self.json();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "error without message: {body}");
        body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {body}")).to_string()
    }
}

/// Development configuration with a migrated database, as `cargo xtask dev` runs it.
pub fn spawn_app() -> TestApp {
    spawn_app_with(&[("EDGESTACK_ENV", "development")])
}

pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer).unwrap();
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// `vars` are added to the database's URL and token (in the services shape, for every Worker).
pub fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    if services_shape() { spawn_services_with(vars, |_, config| config) } else { spawn_app_with_replicas(&[], vars) }
}

fn migrated_primary(migrations: &str) -> DevDb {
    let db = DevDb::start_primary(&random_hex(16), 0).unwrap_or_else(|e| panic!("{e}"));
    db.migrate_dir(&local_stack::workspace_root().join(migrations)).unwrap_or_else(|e| panic!("{e}"));
    db
}

/// The services shape: an accounts and a notes database (each migrated from its own folder)
/// and the three Workers in one `wrangler dev`. `edit(worker, config)` may change a config.
pub fn spawn_services_with(vars: &[(&str, &str)], edit: impl Fn(&str, String) -> String) -> TestApp {
    let accounts = migrated_primary(ACCOUNTS_MIGRATIONS);
    let notes = migrated_primary(NOTES_MIGRATIONS);
    let configs_dir = tempfile::Builder::new().prefix("edgestack-services-").tempdir().unwrap();
    let service_vars = ServiceVars {
        shared: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        accounts_database: accounts.worker_vars(),
        notes_database: notes.worker_vars(),
    };
    let configs =
        local_stack::services::write_configs(configs_dir.path(), &service_vars, edit).unwrap_or_else(|e| panic!("{e}"));
    let dev = WranglerDev::start(WranglerDevOptions { configs, ..WranglerDevOptions::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    TestApp {
        dev,
        replicas: Vec::new(),
        db: accounts,
        notes_db: Some(notes),
        agent: agent(),
        _configs: Some(configs_dir),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// A primary (in `na`), replicas in the given regions with their replication lag in ms, and
/// `wrangler dev` configured for all of them.
pub fn spawn_app_with_replicas(replica_regions: &[(&str, u64)], vars: &[(&str, &str)]) -> TestApp {
    spawn_app_from_config(local_stack::workspace_root().join("wrangler.toml"), replica_regions, vars)
}

/// The project's wrangler.toml with every path made absolute and `edit` applied to its text,
/// written to a temporary file that lives as long as the test process.
pub fn edited_config(edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let root = local_stack::workspace_root();
    let original = std::fs::read_to_string(root.join("wrangler.toml")).unwrap();
    let absolute = original
        .replace("main = \"build/index.js\"", &format!("main = \"{}\"", root.join("build/index.js").display()))
        .replace("directory = \"dist\"", &format!("directory = \"{}\"", root.join("dist").display()))
        .replace("[build]\n", &format!("[build]\ncwd = \"{}\"\n", root.display()))
        .replace(
            "watch_dir = [\"src\", \"crates/edgestack-core/src\", \"web\"]",
            &format!("watch_dir = [\"{}\"]", root.join("src").display()),
        );
    let path = std::env::temp_dir().join(format!("edgestack-wrangler-{}.toml", random_hex(8)));
    std::fs::write(&path, edit(absolute)).unwrap();
    path
}

pub fn spawn_app_from_config(
    config: std::path::PathBuf,
    replica_regions: &[(&str, u64)],
    vars: &[(&str, &str)],
) -> TestApp {
    let db = migrated_primary("migrations");
    let replicas: Vec<(String, DevDb)> = replica_regions
        .iter()
        .map(|(region, lag_ms)| {
            (region.to_string(), DevDb::start_replica(&db, *lag_ms, 0).unwrap_or_else(|e| panic!("{e}")))
        })
        .collect();
    let replica_list: Vec<String> =
        replicas.iter().map(|(region, replica)| format!("{region}={}", replica.url)).collect();
    let mut all_vars = db.worker_vars();
    all_vars.push(("LIBSQL_REPLICAS".into(), replica_list.join(",")));
    all_vars.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let options = WranglerDevOptions { configs: vec![config], vars: all_vars, ..WranglerDevOptions::default() };
    let dev = WranglerDev::start(options).unwrap_or_else(|e| panic!("{e}"));
    TestApp { dev, replicas, db, notes_db: None, agent: agent(), _configs: None }
}

impl TestApp {
    pub fn get(&self, path: &str) -> TestResponse {
        self.request("GET", path, &[], None)
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> TestResponse {
        self.try_request(method, path, headers, body).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `request`, with a transport failure (no answer, or one cut short) as `Err`.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<TestResponse, String> {
        let mut builder = ureq::http::Request::builder().method(method).uri(self.dev.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body.map(<[u8]>::to_vec).unwrap_or_default()).unwrap();
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| format!("{method} {path} failed: {e}\nwrangler log:\n{}", self.dev.log_tail()))?;
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
            let read = response.body_mut().with_config().limit(10 * 1024 * 1024).read_to_vec();
            read.map_err(|e| format!("{method} {path}: the answer's body was cut: {e}"))?
        };
        Ok(TestResponse { status, headers, body })
    }

    pub fn client(&self) -> TestClient<'_> {
        TestClient { app: self, cookies: Mutex::default(), extra_headers: Vec::new() }
    }

    /// A signed-up and signed-in user with a fresh email.
    pub fn signed_up_client(&self) -> (TestClient<'_>, String) {
        let client = self.client();
        let email = format!("user-{}@example.com", random_hex(6));
        let response = client.sign_up(&email, PASSWORD);
        assert_eq!(response.status, 201, "{}", response.text());
        (client, email)
    }

    /// The deployment's databases: one, or the accounts and the notes database.
    pub fn databases(&self) -> Vec<&DevDb> {
        std::iter::once(&self.db).chain(self.notes_db.as_ref()).collect()
    }

    /// First column of every row, read straight from each primary (not through the worker),
    /// from every database where the statement runs (the services' tables are disjoint).
    pub fn query_text(&self, sql: &str) -> Vec<String> {
        let answers: Vec<Result<Vec<String>, String>> = self.databases().iter().map(|db| self.query(db, sql)).collect();
        assert!(answers.iter().any(Result::is_ok), "{sql} failed everywhere: {answers:?}");
        answers.into_iter().flatten().flatten().collect()
    }

    /// Like [`Self::query_text`], on one database only.
    pub fn query_text_in(&self, db: &DevDb, sql: &str) -> Vec<String> {
        self.query(db, sql).unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    fn query(&self, db: &DevDb, sql: &str) -> Result<Vec<String>, String> {
        let body = json!({"requests": [{"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]});
        let mut response = self
            .agent
            .post(&format!("{}/v3/pipeline", db.url))
            .header("Authorization", &format!("Bearer {}", db.token))
            .send_json(&body)
            .map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_slice(&response.body_mut().read_to_vec().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let result = &answer["results"][0];
        if result["type"] != "ok" {
            return Err(result.to_string());
        }
        let rows = result["response"]["result"]["rows"].as_array().cloned().unwrap_or_default();
        Ok(rows.iter().map(|row| row[0]["value"].as_str().unwrap_or_default().to_string()).collect())
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// One user agent: keeps the session cookie the API sets and sends it back, and proves it is
/// not cross-site with `X-Edgestack-Client` (as a script would).
pub struct TestClient<'a> {
    pub app: &'a TestApp,
    /// Every cookie the API set and did not clear, by name.
    cookies: Mutex<BTreeMap<String, String>>,
    /// Extra headers on every request (e.g. the dev region).
    pub extra_headers: Vec<(String, String)>,
}

const SESSION_COOKIE: &str = "__Host-edgestack_session";
/// Read-your-writes cookies: one per database (`…_consistency`, `…_consistency_notes`, …).
const CONSISTENCY_COOKIE_PREFIX: &str = "__Host-edgestack_consistency";

impl TestClient<'_> {
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> TestResponse {
        self.send_with(method, path, &[], body)
    }

    /// [`Self::send`] with `headers` added to this request only.
    pub fn send_with(&self, method: &str, path: &str, extra: &[(&str, &str)], body: Option<&Value>) -> TestResponse {
        let cookie_header = self
            .cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = vec![("x-edgestack-client", "1"), ("content-type", "application/json")];
        if !cookie_header.is_empty() {
            headers.push(("cookie", &cookie_header));
        }
        headers.extend(self.extra_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        headers.extend(extra);
        let body = body.map(|value| value.to_string().into_bytes());
        let response = self.app.request(method, path, &headers, body.as_deref());
        for set_cookie in response.headers_named("set-cookie") {
            let Some((name, value)) = set_cookie.split(';').next().and_then(|pair| pair.split_once('=')) else {
                continue;
            };
            let mut cookies = self.cookies.lock().unwrap();
            if value.is_empty() || set_cookie.contains("Max-Age=0") {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_string(), value.to_string());
            }
        }
        response
    }

    /// The session cookie's value.
    pub fn cookie(&self) -> Option<String> {
        self.cookies.lock().unwrap().get(SESSION_COOKIE).cloned()
    }

    /// Replaces the session cookie.
    pub fn set_cookie(&self, value: Option<&str>) {
        let mut cookies = self.cookies.lock().unwrap();
        match value {
            Some(value) => cookies.insert(SESSION_COOKIE.to_string(), value.to_string()),
            None => cookies.remove(SESSION_COOKIE),
        };
    }

    /// A cookie by name, e.g. the services shape's `__Host-edgestack_identity`.
    pub fn cookie_named(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn has_consistency_cookie(&self) -> bool {
        self.cookies.lock().unwrap().keys().any(|name| name.starts_with(CONSISTENCY_COOKIE_PREFIX))
    }

    pub fn sign_up(&self, email: &str, password: &str) -> TestResponse {
        self.send("POST", "/api/accounts", Some(&json!({"email": email, "password": password})))
    }

    pub fn sign_in(&self, email: &str, password: &str) -> TestResponse {
        self.send("POST", "/api/sessions", Some(&json!({"email": email, "password": password})))
    }

    /// Creates a note and returns its id.
    pub fn create_note(&self, title: &str, body: &str) -> String {
        let response = self.send("POST", "/api/notes", Some(&json!({"title": title, "body": body})));
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["note"]["id"].as_str().unwrap().to_string()
    }
}

/// `spawn_app()` ended every way a test run ends — Ctrl-C, SIGTERM, SIGHUP, SIGKILL, an abort,
/// a panic — leaves none of its processes running 5 s later (by process id and by the ports
/// it reported), and no process carries the database token on its command line. The program
/// ended is this test binary itself, run again with the ignored holder test below.
#[cfg(target_os = "linux")]
mod lifecycle {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use local_stack::inspect;

    const HOLDER: &str = "helpers::lifecycle::holder_of_a_spawned_app";
    const MODE: &str = "EDGESTACK_TEST_HOLDER";

    /// Not a test of its own: the program the other tests end (it returns at once unless
    /// they started it). Prints `started <worker url> <database urls…>` once the app answers.
    #[test]
    #[ignore]
    fn holder_of_a_spawned_app() {
        let Ok(mode) = std::env::var(MODE) else { return };
        let app = super::spawn_app();
        let urls: Vec<&str> = app.databases().iter().map(|db| db.url.as_str()).collect();
        // libtest has printed `test … ... ` without a line break: start a line of our own.
        println!("\nstarted {} {}", app.dev.base_url, urls.join(" "));
        if mode == "panics" {
            std::thread::sleep(Duration::from_millis(500));
            panic!("a panic while the app runs");
        }
        std::thread::sleep(Duration::from_secs(600));
    }

    /// Starts the holder in a process group of its own (a "Ctrl-C" to it misses this test),
    /// waits until its app answers, ends it with `kill <kill_args> <its pid or group>`, and
    /// checks that nothing it started survives.
    fn end_holder(mode: &str, kill_args: &[&str], to_group: bool) {
        let mut holder = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", HOLDER, "--nocapture", "--test-threads=1"])
            .env(MODE, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(holder.stdout.take().unwrap());
        let Some(urls) = stdout.lines().map_while(Result::ok).find_map(|line| {
            line.strip_prefix("started ").map(|urls| urls.split(' ').map(str::to_string).collect::<Vec<_>>())
        }) else {
            let status = holder.wait().unwrap();
            panic!("the holder ended ({status}) before its app answered");
        };
        let started = inspect::tree(holder.id());
        // The holder, its guardian, devdb(s), wrangler (node) and workerd.
        assert!(started.len() >= 5, "{started:#?}");
        if mode != "panics" {
            let target = if to_group { format!("-{}", holder.id()) } else { holder.id().to_string() };
            let killed = Command::new("kill").args(kill_args).arg("--").arg(target).status().unwrap();
            assert!(killed.success());
        }
        let status = holder.wait().unwrap();
        let survivors = inspect::survivors_after(&started, Duration::from_secs(5));
        assert!(survivors.is_empty(), "{mode} {kill_args:?} ({status}): still running 5 s later: {survivors:#?}");
        for url in urls {
            let address = url.trim_start_matches("http://");
            assert!(std::net::TcpStream::connect(address).is_err(), "{address} still answers after {kill_args:?}");
        }
    }

    #[test]
    fn spawn_app_killed_outright_leaves_nothing_running() {
        end_holder("waits", &["-KILL"], false);
    }

    #[test]
    fn no_command_line_carries_the_database_token() {
        let app = super::spawn_app();
        for db in app.databases() {
            let carrying = inspect::command_lines_containing(&db.token);
            assert!(carrying.is_empty(), "the database token is on a command line: {carrying:#?}");
            let log = std::fs::read_to_string(app.dev.log_path()).unwrap();
            assert!(!log.contains(&db.token), "wrangler printed the token:\n{log}");
        }
    }

    /// The other endings; the services pass of `cargo xtask test` skips them (the mechanism is
    /// the same in both shapes, and each costs a stack).
    mod other_endings {
        use super::end_holder;

        #[test]
        fn ctrl_c() {
            // A terminal's Ctrl-C goes to the whole foreground group.
            end_holder("waits", &["-INT"], true);
        }

        #[test]
        fn sigterm() {
            end_holder("waits", &["-TERM"], false);
        }

        #[test]
        fn sighup() {
            end_holder("waits", &["-HUP"], false);
        }

        #[test]
        fn abort() {
            end_holder("waits", &["-ABRT"], false);
        }

        #[test]
        fn panic() {
            end_holder("panics", &[], false);
        }
    }
}
