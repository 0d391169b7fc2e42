//! `cargo xtask dev` ended every way a developer, an editor, a process manager or a crash ends
//! it — Ctrl-C, SIGTERM, SIGHUP, SIGKILL, an abort (what a panic with `panic = "abort"` is) —
//! leaves no process it started running 5 s later (by process id, and by the ports it
//! reported), and the next start on the same data sees what was written before. No process it
//! starts carries the database token on its command line, and nothing it prints contains it.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_stack::inspect;
use serde_json::json;

/// How a run ends, and the exit code `cargo xtask dev` must report (`None`: killed by it).
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// A terminal's Ctrl-C: SIGINT to the whole foreground group.
    CtrlC,
    Signal(libc::c_int),
}

struct Dev {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Dev {
    /// Starts `cargo xtask dev` on a free port with `data` as its data folder, in a process
    /// group of its own (as a terminal's foreground job), and waits until it answers.
    fn start(data: &Path, services: bool, log: PathBuf) -> Self {
        let port = local_stack::free_port().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command.current_dir(local_stack::workspace_root()).args(["dev", "--port", &port.to_string(), "--data"]);
        command.arg(data);
        if services {
            command.arg("--services");
        }
        let output = std::fs::File::create(&log).unwrap();
        command.stdin(Stdio::null()).stdout(output.try_clone().unwrap()).stderr(output).process_group(0);
        let child = command.spawn().unwrap();
        let mut dev = Self { child, log, port };
        dev.wait_until_ready();
        dev
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("cargo xtask dev ended ({status}):\n{}", self.output());
            }
            if agent().get(&self.url("/api/health")).call().is_ok_and(|response| response.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("cargo xtask dev did not answer within 5 minutes:\n{}", self.output());
    }

    /// The ports it reported: each database's and wrangler's.
    fn reported_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .output()
            .split("http://127.0.0.1:")
            .skip(1)
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    fn post(&self, path: &str, body: serde_json::Value) -> u16 {
        let response = agent()
            .post(&self.url(path))
            .header("content-type", "application/json")
            .header("x-edgestack-client", "1")
            .send(body.to_string())
            .unwrap();
        response.status().as_u16()
    }

    /// Ends the run; returns its exit code (`None` when a signal killed it).
    fn end(mut self, ending: Ending) -> (Option<i32>, String) {
        let pid = i32::try_from(self.child.id()).unwrap();
        let (target, signal) = match ending {
            Ending::CtrlC => (-pid, libc::SIGINT),
            Ending::Signal(signal) => (pid, signal),
        };
        let started = inspect::tree(self.child.id());
        let ports = self.reported_ports();
        // SAFETY: kill(2) touches no memory of ours.
        assert_eq!(unsafe { libc::kill(target, signal) }, 0);
        let status = self.child.wait().unwrap();
        let output = self.output();
        let survivors = inspect::survivors_after(&started, Duration::from_secs(5));
        assert!(survivors.is_empty(), "{ending:?}: still running 5 s later: {survivors:#?}\n{output}");
        let open: Vec<u16> =
            ports.iter().copied().filter(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok()).collect();
        assert!(open.is_empty(), "{ending:?}: ports {open:?} of {ports:?} still answer\n{output}");
        assert!(started.len() >= 6, "xtask, guardian, devdbs, wrangler, workerd: {started:#?}");
        (status.code(), output)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn credentials(n: usize) -> serde_json::Value {
    json!({"email": format!("dev-lifecycle-{n}@example.com"), "password": "correct horse battery staple"})
}

/// Starts `dev` once per ending on the same data: each run signs in everyone the earlier runs
/// signed up (the data survived), signs up one more, checks the token stays off every command
/// line, and is ended that way.
fn every_ending_on_the_same_data(services: bool, endings: &[Ending]) {
    // One `dev` at a time: wrangler sessions started at the same moment race for their local
    // ports ("Address already in use", TOOLCHAIN.md), and the tests of this file run in parallel.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let data = tempfile::Builder::new().prefix("xtask-dev-test-").tempdir().unwrap();
    for (run, ending) in endings.iter().enumerate() {
        let dev = Dev::start(data.path(), services, data.path().join(format!("run-{run}.log")));
        for earlier in 0..run {
            assert_eq!(dev.post("/api/sessions", credentials(earlier)), 200, "run {run}: user {earlier} is gone");
        }
        assert_eq!(dev.post("/api/accounts", credentials(run)), 201, "run {run}");

        let token = std::fs::read_to_string(data.path().join("token")).unwrap();
        let token = token.trim();
        assert!(token.len() >= 32, "{token}");
        let carrying: Vec<_> = inspect::command_lines_containing(token);
        assert!(carrying.is_empty(), "the database token is on a command line: {carrying:#?}");

        let (code, output) = dev.end(*ending);
        assert!(!output.contains(token), "the output shows the token:\n{output}");
        match ending {
            // Ctrl-C, SIGTERM and SIGHUP are how dev is meant to end: no failure.
            Ending::CtrlC | Ending::Signal(libc::SIGTERM | libc::SIGHUP) => {
                assert_eq!(code, Some(0), "{ending:?}:\n{output}");
                assert!(!output.contains("failed"), "{ending:?}:\n{output}");
            }
            Ending::Signal(_) => assert_eq!(code, None, "killed by the signal"),
        }
    }
    let dev = Dev::start(data.path(), services, data.path().join("last.log"));
    for earlier in 0..endings.len() {
        assert_eq!(dev.post("/api/sessions", credentials(earlier)), 200, "after every ending: user {earlier}");
    }
    dev.end(Ending::CtrlC);
}

#[test]
fn dev_leaves_nothing_running_however_it_ends_and_keeps_its_data() {
    every_ending_on_the_same_data(
        false,
        &[
            Ending::CtrlC,
            Ending::Signal(libc::SIGTERM),
            Ending::Signal(libc::SIGHUP),
            Ending::Signal(libc::SIGKILL),
            Ending::Signal(libc::SIGABRT),
        ],
    );
}

#[test]
fn dev_services_leaves_nothing_running_and_keeps_its_data() {
    every_ending_on_the_same_data(true, &[Ending::Signal(libc::SIGKILL), Ending::CtrlC]);
}
