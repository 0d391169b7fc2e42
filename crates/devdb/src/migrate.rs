//! `devdb migrate`: applies `*.sql` files once each, in lexical order, through the real libSQL
//! client over HTTP (so it works against Turso as well as devdb).
//!
//! Each file runs in its own transaction together with its `_migrations` row (name + sha256),
//! so a failed file leaves nothing behind. A file whose content changed after it was applied is
//! refused: migrations are history, fix forward with a new file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cli::MigrateArgs;

#[derive(Debug)]
pub struct Migration {
    pub name: String,
    pub sha256: String,
    pub sql: String,
}

/// Reads `dir/*.sql`, sorted by file name.
pub fn read_dir(dir: &Path) -> Result<Vec<Migration>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let sql = std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let sha256 = Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
            Ok(Migration { name, sha256, sql })
        })
        .collect()
}

pub async fn run(args: MigrateArgs) -> Result<(), String> {
    let migrations = read_dir(&args.dir)?;
    let applied = apply(&args.url, &args.token, &migrations).await?;
    for name in &applied {
        println!("applied {name}");
    }
    println!("{} migration(s) applied, {} already present", applied.len(), migrations.len() - applied.len());
    Ok(())
}

/// Applies what is missing; returns the names applied now.
pub async fn apply(url: &str, token: &str, migrations: &[Migration]) -> Result<Vec<String>, String> {
    let db = libsql::Builder::new_remote(url.to_owned(), token.to_owned())
        .build()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let conn = db.connect().map_err(|e| e.to_string())?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (
            name TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        )",
        (),
    )
    .await
    .map_err(|e| format!("cannot create _migrations: {e}"))?;

    let mut done = BTreeMap::new();
    let mut rows = conn
        .query("SELECT name, sha256 FROM _migrations", ())
        .await
        .map_err(|e| format!("cannot read _migrations: {e}"))?;
    while let Some(row) = rows.next().await.map_err(|e| e.to_string())? {
        let name: String = row.get(0).map_err(|e| e.to_string())?;
        let sha: String = row.get(1).map_err(|e| e.to_string())?;
        done.insert(name, sha);
    }

    // Refuse before applying anything, so a changed file never leaves a half-migrated database.
    for m in migrations {
        if let Some(sha) = done.get(&m.name)
            && *sha != m.sha256
        {
            return Err(format!(
                "migration {} was changed after it was applied (applied sha256 {sha}, file sha256 {}); \
                 add a new migration instead",
                m.name, m.sha256
            ));
        }
    }

    let mut applied = Vec::new();
    for m in migrations.iter().filter(|m| !done.contains_key(&m.name)) {
        let tx = conn.transaction().await.map_err(|e| format!("{}: cannot begin: {e}", m.name))?;
        let ran = match tx.execute_batch(&m.sql).await {
            Ok(_) => tx
                .execute(
                    "INSERT INTO _migrations (name, sha256) VALUES (?1, ?2)",
                    libsql::params![m.name.clone(), m.sha256.clone()],
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = ran {
            // Roll back explicitly: an abandoned stream would hold the write lock until it expires.
            let _ = tx.rollback().await;
            return Err(format!("{} failed: {e}", m.name));
        }
        tx.commit().await.map_err(|e| format!("{}: cannot commit: {e}", m.name))?;
        applied.push(m.name.clone());
    }
    Ok(applied)
}
