//! Load with `wrk`: one Lua script per shape sets the method, headers and body and prints wrk's
//! summary as one JSON line, which is all the bench reads of wrk's output.

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;

use super::stack::Shape;
use super::{CONNECTIONS, THREADS};
use crate::Result;

/// The line the script's `done` prints before its JSON.
const RESULT_MARKER: &str = "BENCH_PEER_RESULT ";

pub struct Wrk {
    pub program: PathBuf,
    /// Where the per-shape Lua scripts are written.
    pub scripts: PathBuf,
}

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadRun {
    pub requests: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses with a status of 400 or more (wrk's "non-2xx or 3xx"; no shape can answer 3xx:
    /// the bench sends no conditional headers and nothing redirects).
    pub status_errors: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

impl LoadRun {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 { self.requests as f64 / self.seconds } else { 0.0 }
    }

    pub fn errors(&self) -> u64 {
        self.status_errors + self.socket_errors
    }
}

/// The JSON the script prints: wrk's `summary` and two latency percentiles (microseconds).
#[derive(Debug, Deserialize)]
struct Summary {
    requests: u64,
    duration_us: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
    p50_us: f64,
    p99_us: f64,
}

impl Wrk {
    pub fn run(&self, base_url: &str, shape: &Shape, seconds: u32) -> Result<LoadRun> {
        std::fs::create_dir_all(&self.scripts).map_err(|e| format!("{}: {e}", self.scripts.display()))?;
        let script = self.scripts.join(format!("{}.lua", shape.key));
        std::fs::write(&script, lua_script(shape)).map_err(|e| format!("{}: {e}", script.display()))?;
        // In a process group of local-stack's, so a signal that stops xtask stops wrk too.
        let output = local_stack::process::output(
            Command::new(&self.program)
                .arg(format!("-t{THREADS}"))
                .arg(format!("-c{CONNECTIONS}"))
                .arg(format!("-d{seconds}s"))
                .args(["--timeout", "10s", "-s"])
                .arg(&script)
                .arg(format!("{base_url}{}", shape.path)),
        )?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = stdout.lines().find_map(|line| line.strip_prefix(RESULT_MARKER)).ok_or_else(|| {
            format!(
                "wrk gave no result for {} ({}):\n{stdout}\n{}",
                shape.name,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        let summary: Summary =
            serde_json::from_str(summary).map_err(|e| format!("wrk's result for {}: {e}: {summary}", shape.name))?;
        Ok(LoadRun {
            requests: summary.requests,
            seconds: summary.duration_us as f64 / 1e6,
            p50_ms: summary.p50_us / 1000.0,
            p99_ms: summary.p99_us / 1000.0,
            status_errors: summary.status,
            socket_errors: summary.connect + summary.read + summary.write + summary.timeout,
        })
    }
}

/// wrk's request (method, headers, body) and a `done` that prints the summary as JSON.
fn lua_script(shape: &Shape) -> String {
    let mut script = String::from("-- Written by `cargo xtask bench peer` for one shape.\n");
    script.push_str(&format!("wrk.method = {}\n", lua_string(shape.method)));
    for (name, value) in &shape.headers {
        script.push_str(&format!("wrk.headers[{}] = {}\n", lua_string(name), lua_string(value)));
    }
    if let Some(body) = &shape.body {
        script.push_str(&format!("wrk.body = {}\n", lua_string(body)));
    }
    if !shape.rotating_cookies.is_empty() {
        let cookies: Vec<String> = shape.rotating_cookies.iter().map(|cookie| lua_string(cookie)).collect();
        script.push_str(&format!(
            r#"local cookies = {{{}}}
local turn = 0
request = function()
  turn = turn % #cookies + 1
  wrk.headers["Cookie"] = cookies[turn]
  return wrk.format()
end
"#,
            cookies.join(", ")
        ));
    }
    script.push_str(&format!(
        r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{RESULT_MARKER}{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%.1f,"p99_us":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#
    ));
    script
}

/// A Lua string literal: printable ASCII as is, everything else as a decimal escape (`\ddd`),
/// which every Lua (wrk embeds LuaJIT) reads byte for byte.
fn lua_string(text: &str) -> String {
    let mut literal = String::from("\"");
    for byte in text.bytes() {
        match byte {
            b'"' => literal.push_str("\\\""),
            b'\\' => literal.push_str("\\\\"),
            0x20..=0x7e => literal.push(char::from(byte)),
            other => literal.push_str(&format!("\\{other:03}")),
        }
    }
    literal.push('"');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_strings_escape_quotes_backslashes_and_other_bytes() {
        assert_eq!(lua_string(r#"{"a":"b\c"}"#), r#""{\"a\":\"b\\c\"}""#);
        assert_eq!(lua_string("é\n"), "\"\\195\\169\\010\"");
    }

    fn create_note() -> Shape {
        Shape {
            key: "create-note",
            name: "POST /api/notes",
            method: "POST",
            path: "/api/notes".into(),
            read_cache: true,
            headers: vec![("X-Edgestack-Client", "1".into())],
            body: Some(r#"{"title":"t"}"#.into()),
            same_body: false,
            expected_status: 201,
            rotating_cookies: Vec::new(),
        }
    }

    #[test]
    fn scripts_carry_the_request_and_print_one_json_line() {
        let script = lua_script(&create_note());
        assert!(script.contains("wrk.method = \"POST\"\n"), "{script}");
        assert!(script.contains("wrk.headers[\"X-Edgestack-Client\"] = \"1\"\n"), "{script}");
        assert!(script.contains(r#"wrk.body = "{\"title\":\"t\"}""#), "{script}");
        assert!(script.contains(RESULT_MARKER), "{script}");
        assert!(!script.contains("request = function"), "one request for every call: {script}");
    }

    #[test]
    fn rotating_cookies_take_turns_one_a_request() {
        let shape = Shape {
            headers: vec![("Cookie", "s=a".into())],
            rotating_cookies: vec!["s=a".into(), "s=b".into()],
            ..create_note()
        };
        let script = lua_script(&shape);
        assert!(script.contains(r#"local cookies = {"s=a", "s=b"}"#), "{script}");
        assert!(script.contains("wrk.headers[\"Cookie\"] = cookies[turn]"), "{script}");
    }

    #[test]
    fn errors_add_status_and_socket_errors() {
        let run =
            LoadRun { requests: 1000, seconds: 2.0, p50_ms: 1.0, p99_ms: 3.0, status_errors: 2, socket_errors: 3 };
        assert_eq!((run.rps(), run.errors()), (500.0, 5));
    }
}
