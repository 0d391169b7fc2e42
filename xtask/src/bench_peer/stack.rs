//! The bench's stack: one devdb primary with its seed (a user, a session, 20 published notes)
//! made through a seeding session of its own, and six measured `wrangler dev` sessions —
//! edgestack, the peer and the floor, each with `READ_CACHE=on` and `off` — started one after
//! another (started together they race for wrangler's ports), each with its own name, port and
//! state folder. Also finds the workerd process that runs each session's Worker, whose CPU time
//! the bench samples.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgestack_core::accounts::SessionToken;
use local_stack::devdb::DevDb;
use local_stack::inspect;
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};
use serde_json::json;

use super::report::Side;
use crate::Result;

/// Notes the seed publishes, and the size of each body (issue #15: 20 of about 500 bytes).
const SEEDED_NOTES: usize = 20;
const NOTE_BODY_BYTES: usize = 500;

/// Notes one writer may create before the note quota (`notes::quota::MAX_NOTES`) refuses it,
/// less a margin for the check's writes.
const WRITES_PER_WRITER: u32 = 900;
/// More writes a second than either side reaches here, for sizing the writers.
const MAX_WRITES_PER_SECOND: u32 = 600;

/// What the seed made: the bench user's session and its notes, and the writers' sessions.
/// (Empty: for the shapes' keys and kinds before anything is seeded.)
#[derive(Default)]
pub struct Seed {
    pub session_token: String,
    pub note_ids: Vec<String>,
    /// Sessions of the users the write shape takes turns with, so that no user reaches the
    /// note quota during a run (it would answer 403 fast and flatter the figures).
    pub writer_tokens: Vec<String>,
}

/// Writers enough for `seconds` of writes by both sides (they share the database, so the
/// quota counts both) at up to [`MAX_WRITES_PER_SECOND`].
pub fn writers_needed(seconds: u32) -> usize {
    (2 * seconds * MAX_WRITES_PER_SECOND).div_ceil(WRITES_PER_WRITER).max(1) as usize
}

/// One measured request shape.
#[derive(Clone)]
pub struct Shape {
    /// Short key for files and JSON (`health`, `public-note-uncached`, …).
    pub key: &'static str,
    /// What the table shows.
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    /// Which sessions serve it: those with the read cache on or off.
    pub read_cache: bool,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
    /// Both sides read the same rows, so their bodies must be byte for byte the same (and so
    /// their ETags); otherwise the JSON is, value for value but for ids and times
    /// (`check::VARYING_FIELDS`).
    pub same_body: bool,
    pub expected_status: u16,
    /// `Cookie` values the load takes in turn, one a request (empty: `headers` only).
    pub rotating_cookies: Vec<String>,
}

pub fn shapes(seed: &Seed) -> Vec<Shape> {
    let note = seed.note_ids.first().cloned().unwrap_or_default();
    let cookie = ("Cookie", format!("{}={}", edgestack_core::accounts::session::COOKIE_NAME, seed.session_token));
    let get = |key, name, path: String, read_cache, headers: Vec<(&'static str, String)>, same_body| Shape {
        key,
        name,
        method: "GET",
        path,
        read_cache,
        headers,
        body: None,
        same_body,
        expected_status: 200,
        rotating_cookies: Vec::new(),
    };
    let new_note = json!({"title": "bench write", "body": note_body(0)}).to_string();
    let writer_cookie = |token: &String| format!("{}={token}", edgestack_core::accounts::session::COOKIE_NAME);
    let writers: Vec<String> = seed.writer_tokens.iter().map(writer_cookie).collect();
    vec![
        get("health", "GET /api/health", "/api/health".into(), true, Vec::new(), false),
        get(
            "public-note",
            "GET /api/public/notes/{id}, cache off",
            format!("/api/public/notes/{note}"),
            false,
            Vec::new(),
            true,
        ),
        get(
            "public-note-cached",
            "GET /api/public/notes/{id}, cached",
            format!("/api/public/notes/{note}"),
            true,
            Vec::new(),
            true,
        ),
        get("own-note", "GET /api/notes/{id}, session", format!("/api/notes/{note}"), true, vec![cookie.clone()], true),
        Shape {
            key: "create-note",
            name: "POST /api/notes (write)",
            method: "POST",
            path: "/api/notes".into(),
            read_cache: true,
            headers: vec![
                ("Cookie", writers.first().cloned().unwrap_or_default()),
                // The CSRF rule: a client that is not a browser proves itself with this header.
                ("X-Edgestack-Client", "1".into()),
                ("Content-Type", "application/json".into()),
            ],
            body: Some(new_note),
            same_body: false,
            expected_status: 201,
            rotating_cookies: writers,
        },
    ]
}

/// A note body of about [`NOTE_BODY_BYTES`] of plain words.
fn note_body(n: usize) -> String {
    let mut body = format!("Note {n}. ");
    while body.len() < NOTE_BODY_BYTES {
        body.push_str("The quick brown fox jumps over the lazy dog. ");
    }
    body.truncate(NOTE_BODY_BYTES);
    body
}

/// One `wrangler dev` session and the workerd process that runs its Worker.
pub struct Session {
    pub side: Side,
    pub read_cache: bool,
    /// wrangler's entry proxy: where the seed signs up (it passes `cf-connecting-ip` on).
    pub base_url: String,
    /// The Worker process's own socket behind that proxy, where the check and the load go: the
    /// proxy is `wrangler dev`'s alone (production has none), and each request through it also
    /// cost the Worker process more, so the load skips it (bench/README.md).
    pub load_url: String,
    pub(super) worker_pid: u32,
    dev: WranglerDev,
}

/// CPU time of a session's Worker process and the database's request count at one moment.
pub struct Sample {
    pub cpu_ticks: u64,
    pub db_requests: u64,
}

pub struct Stack {
    // Field order is drop order: the Workers stop before the database they use.
    sessions: Vec<Session>,
    db: DevDb,
    pub seed: Seed,
}

impl Stack {
    /// `writers`: users the write shape takes turns with ([`writers_needed`]); `worker_cpu`:
    /// the core each session's Worker process is pinned to, if any (`cpus`).
    pub fn start(out_dir: &Path, writers: usize, worker_cpu: Option<usize>) -> Result<Self> {
        let token = random_hex(16)?;
        let db = DevDb::start_primary(&token, 0)?;
        db.migrate()?;
        eprintln!("bench peer: devdb primary at {}", db.url);
        let configs = out_dir.join("configs");
        let relocations = snapshot_build(&out_dir.join("snapshot"), &["build", "dist"])?;
        // The seed's sign-ups (an Argon2id hash each, which grows an isolate's wasm memory for
        // good) go through a session of their own, stopped before the measured ones start, so
        // that no measured Worker has made them and the sides start alike.
        let seed = {
            let mut vars = db.worker_vars();
            vars.push(("READ_CACHE".into(), "off".into()));
            let seeder = Session::start(Side::Edgestack, false, "bench-peer-seed", &configs, &relocations, vars)?;
            seed_database(&seeder.base_url, writers)?
        };
        let mut sessions = Vec::new();
        for (side, read_cache) in [
            (Side::Edgestack, true),
            (Side::Edgestack, false),
            (Side::Peer, true),
            (Side::Peer, false),
            (Side::Floor, true),
            (Side::Floor, false),
        ] {
            let mut vars = db.worker_vars();
            vars.push(("READ_CACHE".into(), if read_cache { "on" } else { "off" }.into()));
            if side == Side::Floor {
                let token = SessionToken::parse(&seed.session_token).ok_or("the seeded session token is malformed")?;
                vars.push(("BENCH_SESSION_HASH".into(), token.hash()));
                vars.push(("BENCH_NOTE_ID".into(), seed.note_ids.first().cloned().unwrap_or_default()));
            }
            let name = format!("bench-{}-cache-{}", side.as_str(), if read_cache { "on" } else { "off" });
            let session = Session::start(side, read_cache, &name, &configs, &relocations, vars)?;
            if let Some(cpu) = worker_cpu {
                super::cpus::pin_process(session.worker_pid, cpu)?;
            }
            sessions.push(session);
        }
        Ok(Self { sessions, db, seed })
    }

    pub fn session(&self, side: Side, read_cache: bool) -> Result<&Session> {
        self.sessions
            .iter()
            .find(|session| session.side == side && session.read_cache == read_cache)
            .ok_or_else(|| format!("no {} session with READ_CACHE={read_cache}", side.as_str()))
    }

    pub fn sample(&self, session: &Session) -> Result<Sample> {
        let stats = self.db.stats()?;
        let served = |name: &str| stats[name].as_u64().unwrap_or(0);
        Ok(Sample { cpu_ticks: session.cpu_ticks()?, db_requests: served("pipelines") + served("cursors") })
    }
}

impl Session {
    /// `name`: the session's own Worker name and config folder under `configs`; `relocations`
    /// point the committed config's paths at copies (`snapshot_build`, or a build to compare).
    pub(super) fn start(
        side: Side,
        read_cache: bool,
        name: &str,
        configs: &Path,
        relocations: &[(PathBuf, PathBuf)],
        vars: Vec<(String, String)>,
    ) -> Result<Self> {
        let config = session_config(side, name, configs, relocations)?;
        let started = Instant::now();
        let options = WranglerDevOptions { configs: vec![config], vars, ready_timeout: Duration::from_secs(180) };
        let dev = WranglerDev::start(options).map_err(|error| explain_start_failure(name, &error.0))?;
        let worker_pid = worker_process(&dev)?;
        let load_url = worker_socket(worker_pid)?;
        eprintln!(
            "bench: {name} at {} in {:.1} s (Worker process {worker_pid}, load to {load_url})",
            dev.base_url,
            started.elapsed().as_secs_f64()
        );
        Ok(Self { side, read_cache, base_url: dev.base_url.clone(), load_url, worker_pid, dev })
    }

    /// User + system CPU time of the Worker's process so far, in clock ticks.
    pub(super) fn cpu_ticks(&self) -> Result<u64> {
        cpu_ticks(self.worker_pid).map_err(|error| {
            format!(
                "{}: the Worker's workerd (pid {}) is gone ({error}): wrangler restarted or lost it mid-run, so its CPU time cannot be read; its log:\n{}",
                self.base_url,
                self.worker_pid,
                self.dev.log_tail()
            )
        })
    }
}

/// wrangler's own ports come and go with each session; name the likely cause when one is taken.
fn explain_start_failure(name: &str, error: &str) -> String {
    if error.contains("Address already in use") || error.contains("EADDRINUSE") {
        format!(
            "{name}: a port wrangler dev needs is busy (another wrangler dev or workerd may be running; stop it and retry):\n{error}"
        )
    } else {
        format!("{name}: wrangler dev did not start:\n{error}")
    }
}

/// The session's wrangler config: the committed one (root `wrangler.toml` for edgestack,
/// `bench/<side>/wrangler.toml` otherwise) under its own `name`, with paths made absolute (and
/// `relocations` applied) and without the `[build]` step (the wasm is built once before the
/// sessions start).
fn session_config(side: Side, name: &str, configs: &Path, relocations: &[(PathBuf, PathBuf)]) -> Result<PathBuf> {
    let root = local_stack::workspace_root();
    let source = match side {
        Side::Edgestack => root.join("wrangler.toml"),
        Side::Peer => root.join("bench/peer/wrangler.toml"),
        Side::Floor => root.join("bench/floor/wrangler.toml"),
    };
    let text = std::fs::read_to_string(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    let source_dir = source.parent().ok_or("a config has a folder")?;
    let folder = configs.join(name);
    std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let config = folder.join("wrangler.toml");
    std::fs::write(&config, rewrite_config(&text, source_dir, name, relocations))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(config)
}

/// Line by line (the configs are ours and simple): a new `name`, `main` and `directory` made
/// absolute against `source_dir` and moved by the first of `relocations` (`(from, to)`
/// folders) they lie in, and the `[build]` table left out.
fn rewrite_config(text: &str, source_dir: &Path, name: &str, relocations: &[(PathBuf, PathBuf)]) -> String {
    let mut out = String::new();
    let (mut in_table, mut in_build) = (false, false);
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_table = true;
            in_build = trimmed == "[build]";
        }
        if in_build {
            continue;
        }
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        let value = trimmed.split_once('=').map(|(_, value)| value.trim().trim_matches('"'));
        match (key, value) {
            ("name", Some(_)) if !in_table => out.push_str(&format!("name = \"{name}\"\n")),
            ("main" | "directory", Some(path)) => {
                let absolute = normalize(&source_dir.join(path));
                let absolute = relocations
                    .iter()
                    .find_map(|(from, to)| {
                        // `join("")` would add a trailing `/`.
                        let rest = absolute.strip_prefix(from).ok()?;
                        Some(if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) })
                    })
                    .unwrap_or(absolute);
                out.push_str(&format!("{key} = \"{}\"\n", absolute.display()));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// `a/b/../c` → `a/c`, without touching the file system (the folder may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Copies `build/` (the wasm worker) and `dist/` (the built static assets) into `into` and returns
/// the moves that point the sessions at the copies. `wrangler dev` reloads a Worker whose files
/// change, so a rebuild in the same checkout during a run would otherwise swap the build under
/// measurement — and its workerd process — mid-run. The copy is made under xtask's build lock
/// (`target/xtask-build.lock`, which `cargo xtask build` holds while it writes), so it never
/// catches a build half written.
pub(super) fn snapshot_build(into: &Path, folders: &[&str]) -> Result<Vec<(PathBuf, PathBuf)>> {
    use std::os::fd::AsRawFd;
    let root = local_stack::workspace_root();
    let lock_path = root.join("target/xtask-build.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // SAFETY: flock(2) on a descriptor we own; it does not touch our memory. The lock is
    // released when `lock` drops at the end of this function.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("cannot lock {}", lock_path.display()));
    }
    let mut relocations = Vec::new();
    for folder in folders {
        let (from, to) = (root.join(folder), into.join(folder));
        if to.exists() {
            std::fs::remove_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?;
        }
        copy_tree(&from, &to)?;
        relocations.push((from, to));
    }
    Ok(relocations)
}

fn copy_tree(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(|e| format!("{}: {e}", source.display()))?.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(|e| format!("{}: {e}", source.display()))?;
        }
    }
    Ok(())
}

fn port_of(base_url: &str) -> Result<u16> {
    base_url
        .rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("no port in {base_url}"))
}

/// `wrangler dev` runs two workerd processes: the entry proxy, listening on the session's port
/// (`--socket-addr=entry=127.0.0.1:<port>`), and the one that runs the Worker. Returns the
/// second, found among the session's own processes.
fn worker_process(dev: &WranglerDev) -> Result<u32> {
    let entry_arg = format!("--socket-addr=entry=127.0.0.1:{} ", port_of(&dev.base_url)?);
    let workers: Vec<u32> = inspect::tree(dev.pid())
        .into_iter()
        .filter(|process| {
            let program = process.command_line.split(' ').next().unwrap_or_default();
            program.ends_with("/workerd") && !format!("{} ", process.command_line).contains(&entry_arg)
        })
        .map(|process| process.pid)
        .collect();
    match workers.as_slice() {
        [pid] => Ok(*pid),
        other => Err(format!(
            "expected one workerd process running the Worker of {} beside its entry proxy, found {}",
            dev.base_url,
            other.len()
        )),
    }
}

/// The Worker process's own HTTP socket: of the sockets it listens on (its entry socket, the
/// V8 inspector, workerd's debug port), the one that answers `GET /api/health` with a 200 —
/// exactly one, or the bench cannot tell which it is measuring.
fn worker_socket(worker_pid: u32) -> Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let sockets = inspect::listening_sockets(worker_pid);
    let answering: Vec<String> = sockets
        .iter()
        .map(|socket| format!("http://{socket}"))
        .filter(|url| agent.get(&format!("{url}/api/health")).call().is_ok_and(|answer| answer.status() == 200))
        .collect();
    match <[String; 1]>::try_from(answering) {
        Ok([url]) => Ok(url),
        Err(answering) => Err(format!(
            "the Worker's workerd (pid {worker_pid}) answers GET /api/health on {} of its sockets {sockets:?}, not on exactly one",
            answering.len()
        )),
    }
}

/// The fields of `/proc/<pid>/stat` after `(comm)`, which may itself hold spaces: index 0 is
/// field 3 (state), so field N is at index N − 3.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// utime + stime (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("process gone: {e}"))?;
    let fields = stat_fields(&stat).ok_or("unreadable /proc stat")?;
    let field = |n: usize| fields.get(n - 3).and_then(|value| value.parse::<u64>().ok());
    Ok(field(14).ok_or("no utime")? + field(15).ok_or("no stime")?)
}

/// Clock ticks per second, for turning `/proc` CPU times into microseconds.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf(3) has no preconditions and touches no memory.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// One user (signed up through edgestack's API, so the session is a real one) and its
/// published notes.
pub(super) fn seed_database(base_url: &str, writers: usize) -> Result<Seed> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    // Each sign-up from an address of its own (`cf-connecting-ip`, which `wrangler dev` passes
    // on): the sign-up limit per address would refuse the sixth.
    let addresses = std::cell::Cell::new(0u32);
    let post =
        |path: &str, cookie: Option<&str>, body: serde_json::Value| -> Result<(u16, Vec<String>, serde_json::Value)> {
            addresses.set(addresses.get() + 1);
            let address = format!("198.51.{}.{}", addresses.get() / 250, addresses.get() % 250 + 1);
            let mut request = agent
                .post(&format!("{base_url}{path}"))
                .header("X-Edgestack-Client", "1")
                .header("cf-connecting-ip", &address)
                .header("Content-Type", "application/json");
            if let Some(cookie) = cookie {
                request = request.header("Cookie", cookie);
            }
            let mut response = request.send(body.to_string()).map_err(|e| format!("POST {path}: {e}"))?;
            let cookies = response
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|value| value.to_str().ok().map(String::from))
                .collect();
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().map_err(|e| format!("POST {path}: {e}"))?;
            let json = serde_json::from_str(&text).map_err(|e| format!("POST {path} answered {status} {text}: {e}"))?;
            Ok((status, cookies, json))
        };
    let sign_up = || -> Result<String> {
        let email = format!("bench-{}@example.com", random_hex(6)?);
        let (status, cookies, answer) =
            post("/api/accounts", None, json!({"email": email, "password": "correct horse battery staple"}))?;
        if status != 201 {
            return Err(format!("seeding: sign-up answered {status}: {answer}"));
        }
        let prefix = format!("{}=", edgestack_core::accounts::session::COOKIE_NAME);
        cookies
            .iter()
            .filter_map(|cookie| cookie.split(';').next()?.trim().strip_prefix(&prefix))
            .find(|value| SessionToken::parse(value).is_some())
            .map(String::from)
            .ok_or_else(|| "seeding: sign-up set no session cookie".to_string())
    };
    let session_token = sign_up()?;
    let writer_tokens = (0..writers).map(|_| sign_up()).collect::<Result<Vec<_>>>()?;
    let cookie = format!("{}={session_token}", edgestack_core::accounts::session::COOKIE_NAME);
    let mut note_ids = Vec::new();
    for n in 0..SEEDED_NOTES {
        let note = json!({"title": format!("Bench note {n}"), "body": note_body(n), "published": true});
        let (status, _, answer) = post("/api/notes", Some(&cookie), note)?;
        let id = answer["note"]["id"].as_str().filter(|_| status == 201);
        note_ids.push(id.ok_or_else(|| format!("seeding: note {n} answered {status}: {answer}"))?.to_string());
    }
    Ok(Seed { session_token, note_ids, writer_tokens })
}

/// Random hex from the OS, for the database token and a unique email.
pub(super) fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buffer))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(crate::tools::hex(&buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_run_allowed_counts_its_writers_without_overflow() {
        let seconds =
            super::super::WARM_UP_SECONDS + *super::super::ROUNDS.end() as u32 * *super::super::SECONDS.end() as u32;
        assert!(writers_needed(seconds) > writers_needed(super::super::WARM_UP_SECONDS));
    }

    #[test]
    fn session_configs_get_their_own_name_absolute_paths_and_no_build_step() {
        let relocations = [(PathBuf::from("/repo/dist"), PathBuf::from("/repo/target/snapshot/dist"))];
        let committed = "name = \"edgestack\"\nmain = \"build/index.js\"\n\n[build]\ncommand = \"cargo xtask build\"\nwatch_dir = [\"src\"]\n\n[assets]\ndirectory = \"../../dist\"\nbinding = \"ASSETS\"\n\n[[kv_namespaces]]\nbinding = \"CACHE\"\n";
        let rewritten = rewrite_config(committed, Path::new("/repo/bench/peer"), "bench-peer-cache-on", &relocations);
        assert!(rewritten.starts_with("name = \"bench-peer-cache-on\"\n"), "{rewritten}");
        assert!(rewritten.contains("main = \"/repo/bench/peer/build/index.js\""), "{rewritten}");
        assert!(rewritten.contains("directory = \"/repo/target/snapshot/dist\""), "{rewritten}");
        assert!(!rewritten.contains("[build]") && !rewritten.contains("cargo xtask build"), "{rewritten}");
        assert!(rewritten.contains("[[kv_namespaces]]\nbinding = \"CACHE\""), "{rewritten}");
        let build = [(PathBuf::from("/repo/build"), PathBuf::from("/repo/target/snapshot/build"))];
        let edgestack =
            rewrite_config("name = \"edgestack\"\nmain = \"build/index.js\"\n", Path::new("/repo"), "e", &build);
        assert!(edgestack.contains("main = \"/repo/target/snapshot/build/index.js\""), "{edgestack}");
    }

    #[test]
    fn a_busy_port_is_named_as_the_cause() {
        let busy = explain_start_failure(
            "bench-peer-cache-on",
            "workerd: Address already in use (socket \"direct:1:default\")",
        );
        assert!(busy.starts_with("bench-peer-cache-on: a port wrangler dev needs is busy"), "{busy}");
        let other = explain_start_failure("bench-peer-cache-on", "wrangler dev exited (exit status: 1)");
        assert!(other.contains("did not start") && other.contains("exit status: 1"), "{other}");
    }

    #[test]
    fn reads_cpu_fields_after_a_command_name_with_spaces() {
        let stat = "4242 (workerd (x) y) S 1 4240 4240 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0";
        let fields = stat_fields(stat).unwrap();
        assert_eq!(fields[0], "S");
        assert_eq!(fields[14 - 3], "1234");
        assert_eq!(fields[15 - 3], "567");
        assert_eq!(fields[5 - 3], "4240", "the process group");
    }

    #[test]
    fn finds_ports_and_makes_note_bodies_of_the_right_size() {
        assert_eq!(port_of("http://127.0.0.1:8787"), Ok(8787));
        assert!(port_of("http://127.0.0.1").is_err());
        assert_eq!(note_body(3).len(), NOTE_BODY_BYTES);
    }
}
