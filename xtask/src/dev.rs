//! `cargo xtask dev`: the whole stack on this machine — a local libSQL primary and read
//! replicas for `eu` and `ap` (kept in `.devdb/`), migrations applied, and `wrangler dev` in
//! the foreground on port 8787. Send `x-edgestack-region: eu` to read through a replica.
//! `--services` starts the Level 5 shape instead: an accounts and a notes database (each a
//! primary with replicas) and the entry, accounts and notes Workers in one `wrangler dev`.
//!
//! Ctrl-C (or SIGTERM, SIGHUP) ends it normally: every process it started stops, and the next
//! start finds the same data. The databases' URLs and token reach wrangler through a private
//! env file beside the data, never its command line.

use std::path::Path;
use std::process::Command;

use local_stack::devdb::DevDb;
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

impl LocalDatabase {
    fn start(data: &Path, token: &str, migrations: &Path) -> Result<Self> {
        std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
        let primary =
            DevDb::start_persistent(token, &data.join("primary.db"), vec!["--role".into(), "primary".into()])?;
        primary.migrate_dir(migrations)?;
        eprintln!("xtask: libSQL primary (na) on {} ({}, data in {})", primary.url, pid(&primary), data.display());
        let mut replicas = Vec::new();
        for region in LOCAL_REPLICA_REGIONS {
            let role = vec!["--role".into(), "replica".into(), "--primary".into(), primary.url.clone()];
            let replica = DevDb::start_persistent(token, &data.join(format!("replica-{region}.db")), role)?;
            eprintln!("xtask: libSQL replica ({region}) on {} ({})", replica.url, pid(&replica));
            replicas.push((region, replica));
        }
        Ok(Self { primary, replicas })
    }

    fn vars(&self) -> Vec<(String, String)> {
        let replicas: Vec<String> =
            self.replicas.iter().map(|(region, replica)| format!("{region}={}", replica.url)).collect();
        let mut vars = self.primary.worker_vars();
        vars.push(("LIBSQL_REPLICAS".into(), replicas.join(",")));
        vars
    }
}

fn pid(db: &DevDb) -> String {
    db.pid().map_or_else(String::new, |pid| format!("pid {pid}"))
}

pub fn run_dev_stack(shape: Shape, port: u16, data: &Path) -> Result {
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
    let status = wrangler.wait().map_err(|e| format!("wrangler dev: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("wrangler dev ended: {status}")) }
}

/// The local database's token: random once, then reused so `.devdb/` stays usable.
fn local_token(data: &Path) -> Result<String> {
    let path = data.join("token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let token = hex(&bytes);
    std::fs::write(&path, &token).map_err(|e| format!("{}: {e}", path.display()))?;
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
