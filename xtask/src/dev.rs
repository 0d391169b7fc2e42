//! `cargo xtask dev`: the whole stack on this machine, `wrangler dev` in the foreground.

use std::process::Command;

use crate::tools::{Toolchain, run};
use crate::{Result, build};

pub fn run_dev_stack() -> Result {
    let toolchain = Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    ensure_dev_vars(&toolchain.root)?;
    let mut command = Command::new(&toolchain.node);
    command.current_dir(&toolchain.root).arg(toolchain.root.join("node_modules/wrangler/bin/wrangler.js")).args([
        "dev",
        "--ip",
        "127.0.0.1",
    ]);
    toolchain.apply_env(&mut command);
    run(&mut command)
}

/// Local secrets live in `.dev.vars` (git-ignored); a fresh clone gets development defaults.
fn ensure_dev_vars(root: &std::path::Path) -> Result {
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
