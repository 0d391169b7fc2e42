//! `devdb bench`: pipeline throughput from one client and replica convergence time.
//!
//! Requests are shaped like `@libsql/client`'s: one `POST /v2/pipeline` of `[execute, close]`
//! per statement, sent back to back over one keep-alive connection.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::BenchArgs;

struct Target {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Target {
    async fn pipeline(&self, body: &Json) -> Result<Json, String> {
        let mut req = self.client.post(format!("{}/v2/pipeline", self.url)).json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let v: Json = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {v}"));
        }
        if let Some(err) = v["results"][0].get("error") {
            return Err(err.to_string());
        }
        Ok(v)
    }

    async fn execute(&self, sql: &str, args: Json) -> Result<Json, String> {
        let body = json!({"requests": [
            {"type": "execute", "stmt": {"sql": sql, "args": args}},
            {"type": "close"}
        ]});
        let v = self.pipeline(&body).await?;
        Ok(v["results"][0]["response"]["result"].clone())
    }
}

fn index_of(result: &Json) -> u64 {
    result["replication_index"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A devdb process started by the bench, killed on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn spawn(args: &[String]) -> Result<(Spawned, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child =
        Command::new(exe).args(args).stdout(Stdio::piped()).kill_on_drop(true).spawn().map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .map_err(|_| "devdb did not start in 20 s".to_string())?
        .map_err(|e| e.to_string())?
        .ok_or("devdb exited before listening")?;
    let url =
        line.strip_prefix("devdb listening on ").ok_or_else(|| format!("unexpected first line: {line}"))?.to_owned();
    Ok((Spawned(child), url))
}

async fn throughput(t: &Target, sql: &str, seconds: u64, args: impl Fn(u64) -> Json) -> Result<f64, String> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        t.execute(sql, args(n)).await?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn convergence(
    primary: &Target,
    replica: &Target,
    token: Option<&str>,
) -> Result<(Vec<Duration>, Duration), String> {
    let replica_index = || async {
        let mut req = replica.client.get(format!("{}/_devdb/stats", replica.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let v: Json = req.send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        Ok::<u64, String>(v["replication_index"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
    };
    let wait_for = |target: u64| async move {
        let started = Instant::now();
        loop {
            if replica_index().await? >= target {
                return Ok::<Duration, String>(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err("replica did not converge within 60 s".to_string());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    };
    let mut singles = Vec::new();
    for i in 0..50 {
        let r = primary
            .execute("INSERT INTO bench_kv(v) VALUES (?)", json!([{"type": "text", "value": format!("c{i}")}]))
            .await?;
        let started = Instant::now();
        wait_for(index_of(&r)).await?;
        singles.push(started.elapsed());
    }
    let started = Instant::now();
    let mut last = 0;
    for i in 0..1000 {
        let r = primary
            .execute("INSERT INTO bench_kv(v) VALUES (?)", json!([{"type": "text", "value": format!("bulk{i}")}]))
            .await?;
        last = index_of(&r);
    }
    let written = started.elapsed();
    let waited = wait_for(last).await?;
    let _ = written;
    singles.sort();
    Ok((singles, waited))
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let mut _procs = Vec::new();
    let dir: PathBuf = std::env::temp_dir().join(format!("devdb-bench-{}", std::process::id()));
    let (url, replica_url, token) = match args.url.clone() {
        Some(url) => (url, args.replica_url.clone(), args.token.clone()),
        None => {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let token = args.token.clone().unwrap_or_else(|| "bench-token".to_owned());
            let p = dir.join("primary.db").to_string_lossy().into_owned();
            let (pp, purl) = spawn(&[
                "serve".into(),
                "--role".into(),
                "primary".into(),
                "--db".into(),
                p,
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--token".into(),
                token.clone(),
            ])
            .await?;
            _procs.push(pp);
            let r = dir.join("replica.db").to_string_lossy().into_owned();
            let (rp, rurl) = spawn(&[
                "serve".into(),
                "--role".into(),
                "replica".into(),
                "--primary".into(),
                purl.clone(),
                "--db".into(),
                r,
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--token".into(),
                token.clone(),
            ])
            .await?;
            _procs.push(rp);
            (purl, Some(rurl), Some(token))
        }
    };
    let client = reqwest::Client::new();
    let primary = Target { client: client.clone(), url: url.trim_end_matches('/').to_owned(), token: token.clone() };
    primary.execute("CREATE TABLE IF NOT EXISTS bench_kv(id INTEGER PRIMARY KEY, v TEXT)", json!([])).await?;
    primary.execute("INSERT INTO bench_kv(v) VALUES ('seed')", json!([])).await?;

    let select = throughput(
        &primary,
        "SELECT id, v FROM bench_kv WHERE id = ?",
        args.seconds,
        |_| json!([{"type": "integer", "value": "1"}]),
    )
    .await?;
    let insert = throughput(
        &primary,
        "INSERT INTO bench_kv(v) VALUES (?)",
        args.seconds,
        |n| json!([{"type": "text", "value": format!("row{n}")}]),
    )
    .await?;
    println!("SELECT pipelines ([execute, close], one client): {select:.0} requests/s");
    println!("INSERT pipelines ([execute, close], one client, durable commit each): {insert:.0} requests/s");

    if let Some(rurl) = replica_url {
        let replica = Target { client, url: rurl.trim_end_matches('/').to_owned(), token: token.clone() };
        let (singles, bulk) = convergence(&primary, &replica, token.as_deref()).await?;
        let pct = |p: usize| singles.get(singles.len() * p / 100).copied().unwrap_or_default();
        println!(
            "replica convergence after one write: median {:.2} ms, p90 {:.2} ms (50 writes)",
            pct(50).as_secs_f64() * 1000.0,
            pct(90).as_secs_f64() * 1000.0
        );
        println!(
            "replica convergence after 1000 sequential writes: {:.2} ms after the last write",
            bulk.as_secs_f64() * 1000.0
        );
    } else {
        println!("(no --replica-url: convergence not measured)");
    }
    drop(_procs);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
