//! `cargo xtask dev`: the whole stack on this machine — a local libSQL primary and read
//! replicas for `eu` and `ap` (kept in `.devdb/`), migrations applied, and `wrangler dev` in
//! the foreground on port 8787. Send `x-edgestack-region: eu` to read through a replica.
//! `--services` starts the Level 5 shape instead: an accounts and a notes database (each a
//! primary with replicas) and the entry, accounts and notes Workers in one `wrangler dev`.
//!
//! Ctrl-C (or SIGTERM, SIGHUP) ends it normally: every process it started stops, and the next
//! start finds the same data. The databases' URLs and token reach wrangler through a private
//! env file beside the data, never its command line. One `dev` at a time per data folder (it
//! holds `<data>/lock`); a database server that ends on its own is reported and started again.

use std::path::Path;
use std::process::Command;

use local_stack::devdb::DevDb;
use local_stack::lock::{FolderLock, LockError};
use local_stack::process::GroupChild;
use local_stack::services::{ACCOUNTS_MIGRATIONS, NOTES_MIGRATIONS, ServiceVars, prepare_committed_configs};

use crate::tools::{Toolchain, hex};
use crate::{Result, build};

/// Regions that get a local read replica; the primary stands in `na`.
const LOCAL_REPLICA_REGIONS: [&str; 2] = ["eu", "ap"];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Levels 1–4: one Worker, one database.
    Monolith,
    /// Level 5: entry, accounts and notes Workers; accounts and notes own a database each.
    Services,
}

/// A local primary with replicas, kept in `.devdb/<name>` between runs.
struct LocalDatabase {
    primary: DevDb,
    // Held so the replicas live as long as the stack.
    replicas: Vec<(&'static str, DevDb)>,
}

/// How often a database server that ended on its own is started again before `dev` gives up.
const RESTARTS: u32 = 3;

impl LocalDatabase {
    fn start(data: &Path, token: &str, migrations: &Path) -> Result<Self> {
        std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
        let primary =
            DevDb::start_persistent(token, &data.join("primary.db"), vec!["--role".into(), "primary".into()])?;
        primary.migrate_dir(migrations)?;
        eprintln!("xtask: libSQL primary (na) on {} ({}, data in {})", primary.url, pid(&primary), data.display());
        let primary_cluster = cluster(&primary);
        let mut replicas = Vec::new();
        for region in LOCAL_REPLICA_REGIONS {
            let role = vec!["--role".into(), "replica".into(), "--primary".into(), primary.url.clone()];
            let file = data.join(format!("replica-{region}.db"));
            let replica = DevDb::start_persistent(token, &file, role)?;
            // A replica file keeps the database it copies (its cluster) and follows only that
            // database's primary: next to a new primary.db it would serve the old data forever.
            if let (Some(theirs), Some(ours)) = (cluster(&replica), &primary_cluster)
                && !theirs.is_empty()
                && theirs != *ours
            {
                return Err(format!(
                    "{} copies another database than {} (was primary.db deleted or replaced?) and would serve that one's data: delete the replicas' files, {} (only copies: the next start copies the primary afresh), or all of {} to start over",
                    file.display(),
                    data.join("primary.db").display(),
                    data.join("replica-*.db*").display(),
                    data.display()
                ));
            }
            eprintln!("xtask: libSQL replica ({region}) on {} ({})", replica.url, pid(&replica));
            replicas.push((region, replica));
        }
        Ok(Self { primary, replicas })
    }

    /// Each server with what messages call it: `primary (na)`, `replica (eu)`.
    fn servers(&self) -> Vec<(String, &DevDb)> {
        std::iter::once(("primary (na)".to_string(), &self.primary))
            .chain(self.replicas.iter().map(|(region, replica)| (format!("replica ({region})"), replica)))
            .collect()
    }

    fn vars(&self) -> Vec<(String, String)> {
        let replicas: Vec<String> =
            self.replicas.iter().map(|(region, replica)| format!("{region}={}", replica.url)).collect();
        let mut vars = self.primary.worker_vars();
        vars.push(("LIBSQL_REPLICAS".into(), replicas.join(",")));
        vars
    }
}

/// The database a server holds (`/_devdb/stats`), empty for a replica that has not copied one yet.
fn cluster(db: &DevDb) -> Option<String> {
    db.stats().ok()?.get("cluster")?.as_str().map(str::to_string)
}

fn pid(db: &DevDb) -> String {
    db.pid().map_or_else(String::new, |pid| format!("pid {pid}"))
}

pub fn run_dev_stack(shape: Shape, port: u16, data: &Path) -> Result {
    // Held until the stack is down: one `dev` per data folder.
    let _lock = FolderLock::acquire(data).map_err(|error| match error {
        LockError::Held { pid, .. } => format!(
            "another `cargo xtask dev` is running on {}{}: stop it first (Ctrl-C in its terminal), or give this one its own --data and --port",
            data.display(),
            pid.map_or_else(String::new, |pid| format!(" (process {pid})"))
        ),
        LockError::Io(message) => message,
    })?;
    ensure_port_free(port)?;
    let toolchain = Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    let root = &toolchain.root;
    ensure_dev_vars(root)?;
    let token = local_token(data)?;
    let mut command = Command::new(&toolchain.node);
    command
        .current_dir(root)
        .arg(root.join("node_modules/wrangler/bin/wrangler.js"))
        .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string(), "--test-scheduled"])
        // Its own process group has no terminal to read keys from.
        .arg("--show-interactive-dev-session=false")
        // KV and cache state lives with the databases, so one `--data` folder is one stack.
        .arg("--persist-to")
        .arg(data.join("wrangler"));
    // Held until wrangler exits; the databases stop when they drop.
    let mut databases = Vec::new();
    match shape {
        Shape::Monolith => {
            let database = LocalDatabase::start(data, &token, &root.join("migrations"))?;
            // `.dev.vars` first (the developer's own settings), then this stack's databases.
            let stack_vars = data.join("stack.env");
            local_stack::wrangler::write_env_file(&stack_vars, &database.vars())?;
            command.arg("--env-file").arg(root.join(".dev.vars")).arg("--env-file").arg(&stack_vars);
            databases.push(database);
        }
        Shape::Services => {
            let accounts = LocalDatabase::start(&data.join("accounts"), &token, &root.join(ACCOUNTS_MIGRATIONS))?;
            let notes = LocalDatabase::start(&data.join("notes"), &token, &root.join(NOTES_MIGRATIONS))?;
            let vars = ServiceVars {
                shared: vec![("EDGESTACK_ENV".into(), "development".into())],
                accounts_database: accounts.vars(),
                notes_database: notes.vars(),
            };
            for config in prepare_committed_configs(&vars)? {
                command.arg("--config").arg(config);
            }
            eprintln!("xtask: entry, accounts and notes Workers (services/*/wrangler.toml, .dev.vars written beside)");
            databases.extend([accounts, notes]);
        }
    }
    toolchain.apply_env(&mut command);
    let mut wrangler = GroupChild::spawn_inheriting("wrangler dev", &mut command)
        .map_err(|e| format!("cannot start wrangler: {e}"))?;
    eprintln!("xtask: wrangler dev (pid {}) on http://127.0.0.1:{port}; Ctrl-C stops everything", wrangler.id());
    watch(&mut wrangler, &databases)?;
    let status = wrangler.wait().map_err(|e| format!("wrangler dev: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("wrangler dev ended: {status}")) }
}

/// Waits for wrangler to end. A database server that ends meanwhile (a crash, something killed
/// it) is reported and started again on the same port, so the worker's URLs stay valid; after
/// [`RESTARTS`] restarts of one server, or if it cannot start, the stack stops with the reason.
fn watch(wrangler: &mut GroupChild, databases: &[LocalDatabase]) -> Result {
    let mut restarts = std::collections::HashMap::<String, u32>::new();
    while wrangler.exited().is_none() {
        for database in databases {
            for (name, server) in database.servers() {
                // A signal is stopping everything: that ends the servers, and is no crash.
                let Some(how) = server.exited().filter(|_| !local_stack::process::stopping()) else { continue };
                let log = server.log_path().map_or_else(String::new, |path| path.display().to_string());
                let count = restarts.entry(format!("{} {name}", server.url)).or_default();
                *count += 1;
                if *count > RESTARTS {
                    return Err(format!(
                        "libSQL {name} on {} ended again ({how}) after {RESTARTS} restarts; its output ({log}):\n{}\nFix the cause, then run `cargo xtask dev` again",
                        server.url,
                        server.log_tail(2000)
                    ));
                }
                eprintln!(
                    "xtask: libSQL {name} on {} ended ({how}); starting it again (its output: {log})",
                    server.url
                );
                server.restart().map_err(|e| {
                    format!(
                        "libSQL {name} on {} ended ({how}) and cannot start again: {e}\nRun `cargo xtask dev` again",
                        server.url
                    )
                })?;
                eprintln!("xtask: libSQL {name} on {} again ({})", server.url, pid(server));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Ok(())
}

/// Fails early, before the build and the databases, when something already listens where
/// wrangler is to listen (wrangler's own message would come only after both).
fn ensure_port_free(port: u16) -> Result {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "127.0.0.1:{port} is taken (`ss -ltnp 'sport = :{port}'` shows by what): stop that server, or start on another port with --port"
        )),
        Err(error) => Err(format!("127.0.0.1:{port}: {error}")),
    }
}

/// The local database's token: random once, then reused so `.devdb/` stays usable. Only this
/// user can read it (it is the secret the command lines never show). The servers take any
/// token, so an empty file (a first start cut short) just gets a new one.
fn local_token(data: &Path) -> Result<String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = data.join("token");
    let describe = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Ok(token) = std::fs::read_to_string(&path)
        && !token.trim().is_empty()
    {
        // Written readable by everyone before.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(describe)?;
        return Ok(token.trim().to_string());
    }
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let token = hex(&bytes);
    // Whole or not at all: written beside, then renamed over.
    let partial = data.join("token.partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    std::io::Write::write_all(&mut file, token.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    std::fs::rename(&partial, &path).map_err(describe)?;
    Ok(token)
}

/// Local vars live in `.dev.vars` (git-ignored); a fresh clone gets development defaults.
fn ensure_dev_vars(root: &Path) -> Result {
    let path = root.join(".dev.vars");
    if path.exists() {
        return Ok(());
    }
    std::fs::write(
        &path,
        "# Local-only vars and secrets for `wrangler dev`; never committed.\nEDGESTACK_ENV=development\n",
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}
