//! Test harness: spawns the real `devdb` binary on free ports and talks to it over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

pub const TOKEN: &str = "test-token";

/// A running devdb process; killed (SIGKILL) when dropped, even if the test panics.
pub struct Server {
    child: Child,
    pub url: String,
    pub db: PathBuf,
    /// The command line it was started with, for a restart.
    args: Vec<String>,
}

/// A killed server that can be started again on the same file, port and arguments.
pub struct Stopped {
    pub url: String,
    args: Vec<String>,
}

impl Stopped {
    /// Starts it again with the arguments it had (so a promoted replica comes back with
    /// `--role replica`, as `local-stack` restarts it).
    pub fn start(&self) -> Server {
        let listen = self.url.trim_start_matches("http://").to_owned();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = listen;
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn(&args)
    }
}

impl Server {
    pub fn primary(db: &Path) -> Server {
        spawn(&["serve", "--role", "primary", "--db", path(db), "--listen", "127.0.0.1:0", "--token", TOKEN])
    }

    pub fn replica(db: &Path, primary: &str) -> Server {
        spawn(&[
            "serve",
            "--role",
            "replica",
            "--primary",
            primary,
            "--db",
            path(db),
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
        ])
    }

    /// Like `kill -9`: no chance to flush or clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -9`, keeping what it takes to start it again.
    pub fn stop(mut self) -> Stopped {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Stopped { url: self.url.clone(), args: self.args.clone() }
    }

    /// The process id, for sending it a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited within `within` (polling).
    pub fn exits_within(&mut self, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// A replica with extra arguments (`--lag-ms`, `--advertise-url`, ...).
    pub fn replica_with(db: &Path, primary: &str, extra: &[&str]) -> Server {
        let mut args = vec![
            "serve",
            "--role",
            "replica",
            "--primary",
            primary,
            "--db",
            path(db),
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
        ];
        args.extend_from_slice(extra);
        spawn(&args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

pub fn spawn(args: &[&str]) -> Server {
    let db = args.iter().position(|a| *a == "--db").map(|i| PathBuf::from(args[i + 1])).unwrap_or_default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_devdb"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn devdb");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let args = args.iter().map(|a| (*a).to_owned()).collect();
    let mut server = Server { child, url: String::new(), db, args };
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("devdb did not announce itself");
    server.url = line
        .trim()
        .strip_prefix("devdb listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    server
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn post(url: &str, path: &str, body: &Json) -> (u16, Json) {
    let resp = client().post(format!("{url}{path}")).bearer_auth(TOKEN).json(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Json::String(text)))
}

pub async fn get(url: &str, path: &str) -> (u16, Json) {
    let resp = client().get(format!("{url}{path}")).bearer_auth(TOKEN).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Json::String(text)))
}

/// One `[execute, close]` pipeline (what @libsql/client sends); returns the statement result
/// or the Hrana error object.
pub async fn exec(url: &str, sql: &str, args: Json) -> Result<Json, Json> {
    let (status, body) = post(
        url,
        "/v2/pipeline",
        &json!({"requests": [{"type": "execute", "stmt": {"sql": sql, "args": args}}, {"type": "close"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = &body["results"][0];
    if r["type"] == "ok" { Ok(r["response"]["result"].clone()) } else { Err(r["error"].clone()) }
}

pub async fn must(url: &str, sql: &str) -> Json {
    exec(url, sql, json!([])).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub fn index_of(result: &Json) -> u64 {
    result["replication_index"].as_str().unwrap().parse().unwrap()
}

pub async fn stats(url: &str) -> Json {
    let (status, body) = get(url, "/_devdb/stats").await;
    assert_eq!(status, 200);
    body
}

pub async fn index(url: &str) -> u64 {
    stats(url).await["replication_index"].as_str().unwrap().parse().unwrap()
}

/// Waits until `url`'s replication index reaches `target`; returns how long it took.
pub async fn wait_index(url: &str, target: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if index(url).await >= target {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "index {target} not reached within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every user table (including sqlite_sequence), its schema and every row with its rowid where
/// it has one, as one JSON document: equal dumps mean byte-identical content.
pub async fn dump(url: &str) -> Json {
    let tables =
        must(url, "SELECT name, type, sql FROM sqlite_master WHERE substr(tbl_name, 1, 7) <> '_devdb_' ORDER BY name")
            .await;
    let mut out = Vec::new();
    for t in tables["rows"].as_array().unwrap() {
        let name = t[0]["value"].as_str().unwrap();
        let kind = t[1]["value"].as_str().unwrap();
        out.push(json!([name, kind, t[2].clone()]));
        if kind != "table" {
            continue;
        }
        let sql = t[2]["value"].as_str().unwrap_or("");
        let without_rowid = sql.to_uppercase().contains("WITHOUT ROWID");
        let q = if without_rowid {
            format!("SELECT * FROM \"{name}\" ORDER BY 1")
        } else {
            format!("SELECT _rowid_, * FROM \"{name}\" ORDER BY _rowid_")
        };
        out.push(must(url, &q).await["rows"].clone());
    }
    Json::Array(out)
}

pub fn checksum(dump: &Json) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(dump).unwrap();
    sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts two dumps are equal, naming the first differing entry instead of printing both.
pub fn assert_same(a: &Json, b: &Json) {
    if checksum(a) == checksum(b) {
        return;
    }
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            let (xs, ys) = (x.to_string(), y.to_string());
            let at = xs.bytes().zip(ys.bytes()).take_while(|(p, q)| p == q).count();
            let lo = at.saturating_sub(200);
            panic!(
                "dumps differ at entry {i} (of {} vs {}), near: {}\n---\n{}",
                a.len(),
                b.len(),
                &xs[lo..(at + 200).min(xs.len())],
                &ys[lo..(at + 200).min(ys.len())]
            );
        }
    }
    panic!("dumps differ in length: {} vs {}", a.len(), b.len());
}

/// Polls `check` every 20 ms until it holds; fails the test after `within`, naming `what`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pipeline's HTTP status, JSON body and the node headers (`x-devdb-role`, `x-devdb-term`).
pub async fn pipeline_with_headers(url: &str, body: &Json) -> (u16, Json, String, String) {
    let resp = client().post(format!("{url}/v3/pipeline")).bearer_auth(TOKEN).json(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (role, term) = (header("x-devdb-role"), header("x-devdb-term"));
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Json::String(text)), role, term)
}
