//! `cargo xtask dev`: the whole stack on this machine — a local libSQL primary and read
//! replicas for `eu` and `ap` (kept in `.devdb/`), migrations applied, and `wrangler dev` in
//! the foreground on port 8787. Send `x-edgestack-region: eu` to read through a replica.

use std::path::Path;
use std::process::Command;

use local_stack::devdb::DevDb;

use crate::tools::{Toolchain, hex, run};
use crate::{Result, build};

/// Regions that get a local read replica; the primary stands in `na`.
const LOCAL_REPLICA_REGIONS: [&str; 2] = ["eu", "ap"];

pub fn run_dev_stack() -> Result {
    let toolchain = Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    ensure_dev_vars(&toolchain.root)?;
    let data = toolchain.root.join(".devdb");
    let token = local_token(&data)?;
    let primary = DevDb::start_persistent(&token, &data.join("primary.db"), vec!["--role".into(), "primary".into()])?;
    primary.migrate()?;
    eprintln!("xtask: libSQL primary (na) on {} (data in .devdb/)", primary.url);
    let mut replicas = Vec::new();
    for region in LOCAL_REPLICA_REGIONS {
        let role = vec!["--role".into(), "replica".into(), "--primary".into(), primary.url.clone()];
        let replica = DevDb::start_persistent(&token, &data.join(format!("replica-{region}.db")), role)?;
        eprintln!("xtask: libSQL replica ({region}) on {}", replica.url);
        replicas.push((region, replica));
    }
    let replica_list: Vec<String> =
        replicas.iter().map(|(region, replica)| format!("{region}={}", replica.url)).collect();
    let mut command = Command::new(&toolchain.node);
    command
        .current_dir(&toolchain.root)
        .arg(toolchain.root.join("node_modules/wrangler/bin/wrangler.js"))
        .args(["dev", "--ip", "127.0.0.1", "--port", "8787"])
        .args(["--var", &format!("LIBSQL_PRIMARY_URL:{}", primary.url)])
        .args(["--var", &format!("LIBSQL_AUTH_TOKEN:{token}")])
        .args(["--var", &format!("LIBSQL_REPLICAS:{}", replica_list.join(","))]);
    toolchain.apply_env(&mut command);
    // The databases stop with this process (their guards drop) once wrangler exits.
    run(&mut command)
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
