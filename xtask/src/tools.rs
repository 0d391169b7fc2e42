//! Installs and locates the build toolchain: wasm target, wasm-bindgen CLI, worker-build, npm
//! packages, Node 22. Every step checks first, so a second run costs about a second.
//!
//! worker-build cannot download its helpers from GitHub here, so it gets them through
//! `WASM_BINDGEN_BIN`, `ESBUILD_BIN` and `WASM_OPT_BIN`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Result;

pub struct Toolchain {
    pub root: PathBuf,
    pub node: PathBuf,
    pub wasm_bindgen: PathBuf,
    pub worker_build: PathBuf,
    pub wasm_opt: PathBuf,
    /// The platform's esbuild from npm; `None` lets worker-build fetch it from npm itself.
    pub esbuild: Option<PathBuf>,
}

impl Toolchain {
    pub fn ensure() -> Result<Self> {
        let root = local_stack::workspace_root();
        ensure_wasm_target()?;
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
        let wasm_bindgen_version = locked_version(&lock, "wasm-bindgen").ok_or("wasm-bindgen is not in Cargo.lock")?;
        let worker_version = locked_version(&lock, "worker").ok_or("worker is not in Cargo.lock")?;
        let wasm_bindgen = ensure_cargo_tool("wasm-bindgen-cli", "wasm-bindgen", &wasm_bindgen_version)?;
        // worker-build 0.8.x must match the worker crate it packages.
        let worker_build = ensure_cargo_tool("worker-build", "worker-build", &worker_version)?;
        ensure_npm_packages(&root)?;
        let node = local_stack::node::find_node(&root).map_err(|e| e.to_string())?;
        let wasm_opt = root.join("node_modules/binaryen/bin/wasm-opt");
        if !wasm_opt.is_file() {
            return Err(format!("{} is missing after npm ci", wasm_opt.display()));
        }
        let esbuild =
            esbuild_platform_dir().map(|dir| root.join("node_modules/@esbuild").join(dir).join("bin/esbuild"));
        let esbuild = esbuild.filter(|path| path.is_file());
        Ok(Self { root, node, wasm_bindgen, worker_build, wasm_opt, esbuild })
    }

    /// Environment for worker-build and wrangler: the helper binaries and Node 22 first on PATH,
    /// and none of the outer cargo's per-crate variables (both run cargo).
    pub fn apply_env(&self, command: &mut Command) {
        local_stack::cargo::without_outer_cargo_env(command);
        command
            .env("WASM_BINDGEN_BIN", &self.wasm_bindgen)
            .env("WASM_OPT_BIN", &self.wasm_opt)
            .env("PATH", local_stack::node::path_with_node_first(&self.node))
            .env("WRANGLER_SEND_METRICS", "false");
        if let Some(esbuild) = &self.esbuild {
            command.env("ESBUILD_BIN", esbuild);
        }
    }
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"))
}

/// Runs a command to its end with inherited output, in a process group that ends with xtask
/// (local-stack's `process::run`); a non-zero exit is an error naming the program and its
/// arguments, never its environment.
pub fn run(command: &mut Command) -> Result {
    local_stack::process::run(command)
}

fn output_of(program: &Path, arg: &str) -> Option<String> {
    let output = Command::new(program).arg(arg).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn ensure_wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add the wasm target: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|line| line.trim() == "wasm32-unknown-unknown") {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
}

/// The version of `name` in Cargo.lock (the first entry if several).
pub fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_string());
        }
    }
    None
}

/// `cargo install`s `package` at exactly `version` unless `binary` in cargo's bin folder
/// already reports that version.
fn ensure_cargo_tool(package: &str, binary: &str, version: &str) -> Result<PathBuf> {
    let path = cargo_home().join("bin").join(binary);
    let reported = output_of(&path, "--version").unwrap_or_default();
    if reported.split_whitespace().any(|word| word == version) {
        return Ok(path);
    }
    eprintln!("xtask: installing {package} {version} (a few minutes, once)");
    run(local_stack::cargo::command().args(["install", package, "--version", version, "--locked"]))?;
    Ok(path)
}

/// `npm ci` when `package-lock.json` changed since the last install.
fn ensure_npm_packages(root: &Path) -> Result {
    let lock = std::fs::read(root.join("package-lock.json")).map_err(|e| format!("package-lock.json: {e}"))?;
    let digest = hex(&Sha256::digest(&lock));
    let stamp = root.join("node_modules/.edgestack-package-lock.sha256");
    if std::fs::read_to_string(&stamp).is_ok_and(|recorded| recorded.trim() == digest) {
        return Ok(());
    }
    eprintln!("xtask: npm ci");
    run(Command::new("npm").current_dir(root).args(["ci", "--no-audit", "--no-fund"]))?;
    std::fs::write(&stamp, digest).map_err(|e| format!("{}: {e}", stamp.display()))
}

/// What tests and benchmarks need besides the build toolchain: Chromium for the browser test,
/// `wrk` for `bench peer` and `bench ab`. Not part of [`Toolchain::ensure`], which `dev`,
/// `build` and so wrangler's `[build] command` (`wrangler deploy` too) run: none of them
/// should install a browser with apt-get.
pub fn ensure_test_tools() -> Result {
    ensure_chromium()?;
    crate::bench_peer::ensure_load_generator()
}

/// Headless Chromium for the browser test, from Debian's packages (Playwright's own browser
/// download cannot work offline). Elsewhere, set `CHROMIUM_PATH`.
fn ensure_chromium() -> Result {
    let configured = std::env::var_os("CHROMIUM_PATH").map(PathBuf::from);
    let path = configured.unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Ok(());
    }
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !(has_apt && is_root) {
        eprintln!("xtask: no Chromium at {}; the browser test will fail until CHROMIUM_PATH names one", path.display());
        return Ok(());
    }
    eprintln!("xtask: installing Debian's chromium (once)");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn esbuild_platform_dir() -> Option<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some("linux-x64"),
        ("linux", "aarch64") => Some("linux-arm64"),
        ("macos", "x86_64") => Some("darwin-x64"),
        ("macos", "aarch64") => Some("darwin-arm64"),
        _ => None,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_from_cargo_lock() {
        let lock = "[[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.129\"\nsource = \"x\"\n\n[[package]]\nname = \"worker\"\nversion = \"0.8.7\"\n";
        assert_eq!(locked_version(lock, "wasm-bindgen").as_deref(), Some("0.2.129"));
        assert_eq!(locked_version(lock, "worker").as_deref(), Some("0.8.7"));
        assert_eq!(locked_version(lock, "wasm"), None);
    }

    #[test]
    fn real_lock_pins_the_wasm_bindgen_worker_build_expects() {
        let lock = std::fs::read_to_string(local_stack::workspace_root().join("Cargo.lock")).unwrap();
        assert_eq!(locked_version(&lock, "wasm-bindgen").as_deref(), Some("0.2.129"));
    }
}
