//! The Level 5 shape on this machine: the entry, accounts and notes Workers in one `wrangler
//! dev` session. `wrangler dev` passes `--var` to its first Worker only and reads each other
//! Worker's `.dev.vars` from that Worker's config folder, so every Worker gets its own folder
//! with its config and its own `.dev.vars` (its database, its identity key).

use std::path::{Path, PathBuf};

use edgestack_core::services::identity::{IdentitySigner, encode_key};

use crate::workspace_root;

/// The Workers of the services shape, entry first (the one `wrangler dev` serves).
pub const WORKERS: [&str; 3] = ["entry", "accounts", "notes"];
/// Each service's migrations, relative to the workspace root.
pub const ACCOUNTS_MIGRATIONS: &str = "migrations/accounts";
pub const NOTES_MIGRATIONS: &str = "migrations/notes";

/// A fresh Ed25519 pair: `(IDENTITY_SIGNING_KEY for accounts, IDENTITY_PUBLIC_KEY for the rest)`.
pub fn identity_keys() -> Result<(String, String), String> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut seed))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let public = IdentitySigner::from_seed(&seed).verifying_key();
    Ok((encode_key(&seed), encode_key(&public)))
}

/// The vars each Worker needs besides `shared`: the identity keys, and a service's database.
pub struct ServiceVars {
    pub shared: Vec<(String, String)>,
    pub accounts_database: Vec<(String, String)>,
    pub notes_database: Vec<(String, String)>,
}

impl ServiceVars {
    fn for_worker(&self, worker: &str, keys: &(String, String)) -> Vec<(String, String)> {
        let (signing, public) = keys;
        let mut vars = self.shared.clone();
        match worker {
            "accounts" => {
                vars.extend(self.accounts_database.iter().cloned());
                vars.push(("IDENTITY_SIGNING_KEY".into(), signing.clone()));
            }
            "notes" => {
                vars.extend(self.notes_database.iter().cloned());
                vars.push(("IDENTITY_PUBLIC_KEY".into(), public.clone()));
            }
            _ => vars.push(("IDENTITY_PUBLIC_KEY".into(), public.clone())),
        }
        vars
    }
}

/// Writes `.dev.vars` beside each committed config in `services/` and returns the configs,
/// entry first: what `cargo xtask dev --services` runs.
pub fn prepare_committed_configs(vars: &ServiceVars) -> Result<Vec<PathBuf>, String> {
    let keys = identity_keys()?;
    let root = workspace_root();
    WORKERS
        .iter()
        .map(|worker| {
            let folder = root.join("services").join(worker);
            write_dev_vars(&folder, &vars.for_worker(worker, &keys))?;
            Ok(folder.join("wrangler.toml"))
        })
        .collect()
}

/// Copies of the committed configs in `dir` (paths made absolute, `edit` applied to each
/// config's text), each with its own `.dev.vars`: a stack that cannot touch another's.
pub fn write_configs(
    dir: &Path,
    vars: &ServiceVars,
    edit: impl Fn(&str, String) -> String,
) -> Result<Vec<PathBuf>, String> {
    let keys = identity_keys()?;
    let root = workspace_root();
    let absolute_root = format!("\"{}/", root.display());
    WORKERS
        .iter()
        .map(|worker| {
            let committed = root.join("services").join(worker).join("wrangler.toml");
            let text = std::fs::read_to_string(&committed).map_err(|e| format!("{}: {e}", committed.display()))?;
            let folder = dir.join(worker);
            std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
            let config = folder.join("wrangler.toml");
            std::fs::write(&config, edit(worker, text.replace("\"../../", &absolute_root)))
                .map_err(|e| format!("{}: {e}", config.display()))?;
            write_dev_vars(&folder, &vars.for_worker(worker, &keys))?;
            Ok(config)
        })
        .collect()
}

fn write_dev_vars(folder: &Path, vars: &[(String, String)]) -> Result<(), String> {
    crate::wrangler::write_env_file(&folder.join(".dev.vars"), vars)
}
