//! Builds the worker (`worker-build --release`) unless none of its inputs changed.
//!
//! wrangler runs `cargo xtask build` on every `wrangler dev` start and file change; the input
//! digest makes a start with nothing to do cost well under a second, and keeps tests that start
//! many `wrangler dev` sessions from rebuilding (or racing on `build/`).

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::tools::{Toolchain, hex, run};
use crate::{Result, assets};

/// Everything the wasm worker is built from, relative to the workspace root.
const WORKER_INPUTS: &[&str] =
    &["src", "crates/edgestack-core/src", "crates/edgestack-core/Cargo.toml", "Cargo.toml", "Cargo.lock"];
const STAMP: &str = "build/.inputs.sha256";
/// Everything the canary gateway worker (`gateway/`, docs/releases.md) is built from.
const GATEWAY_INPUTS: &[&str] = &[
    "gateway/src",
    "gateway/Cargo.toml",
    "crates/release/src",
    "crates/release/Cargo.toml",
    "crates/edgestack-core/src",
    "crates/edgestack-core/Cargo.toml",
    "Cargo.toml",
    "Cargo.lock",
];
/// Everything the production front Worker (`front/`, docs/releases.md) is built from.
const FRONT_INPUTS: &[&str] = &[
    "front/src",
    "front/Cargo.toml",
    "crates/release/src",
    "crates/release/Cargo.toml",
    "crates/edgestack-core/src",
    "crates/edgestack-core/Cargo.toml",
    "Cargo.toml",
    "Cargo.lock",
];

/// What a worker build holds (in `build/`): wrangler's entry, wasm-bindgen's glue it imports,
/// and the wasm.
pub const WORKER_FILES: [&str; 3] = ["index.js", "glue.js", "index_bg.wasm"];

pub fn build_worker(toolchain: &Toolchain) -> Result {
    let root = &toolchain.root;
    // Several `wrangler dev` sessions starting together each run this; one builds, the others
    // wait and then find the stamp fresh.
    let _lock = BuildLock::acquire(&root.join("target/xtask-build.lock"))?;
    assets::build_site(root)?;
    let keep_names = keeps_wasm_names();
    // A build with names is another build: switching either way rebuilds.
    let digest = inputs_digest(root, WORKER_INPUTS)? + if keep_names { "+names" } else { "" };
    let stamp = root.join(STAMP);
    let built = WORKER_FILES.iter().all(|file| root.join("build").join(file).is_file());
    if built && std::fs::read_to_string(&stamp).is_ok_and(|recorded| recorded.trim() == digest) {
        return Ok(());
    }
    let mut command = Command::new(&toolchain.worker_build);
    command.current_dir(root).arg("--release");
    toolchain.apply_env(&mut command);
    run(&mut command)?;
    if !keep_names {
        shrink_wasm(toolchain, &root.join("build/index_bg.wasm"))?;
    }
    install_entry(&root.join("build"), &root.join("src/entry.mjs"))?;
    std::fs::write(&stamp, digest).map_err(|e| format!("{}: {e}", stamp.display()))
}

/// The features worker-build lets wasm-opt use (rustc's wasm32 defaults and the exception
/// handling of wasm-bindgen's catch wrappers): nothing newer than workerd reads.
const WASM_FEATURES: &[&str] = &[
    "mutable-globals",
    "sign-ext",
    "nontrapping-float-to-int",
    "bulk-memory",
    "multivalue",
    "reference-types",
    "exception-handling",
];

/// `EDGESTACK_WASM_NAMES=keep` keeps the app Worker's function names, for a CPU profile that
/// names wasm functions (`bench/profile/cpu-profile.mjs`); never for a deployment.
fn keeps_wasm_names() -> bool {
    std::env::var("EDGESTACK_WASM_NAMES").is_ok_and(|value| value == "keep")
}

/// Drops the wasm `name` section, which worker-build keeps on purpose (`wasm-opt --debuginfo`):
/// for the app Worker 164 KB raw, ≈ 47 KB of its ≈ 355 KB gzip, downloaded and compiled by every
/// new isolate (issue #15's goal is ≤ 350 KB gzip). A panic still logs its message and
/// `file:line` (console_error_panic_hook); only its stack shows function indexes for names.
/// binaryen's own pass (`--strip-debug`) does it, with `-Oz` after worker-build's `-Os`: on the
/// module without names that pass takes 823.0 → 815.7 KB raw, 351.2 → 348.6 KB gzip -9, at no
/// measured CPU cost (docs/performance.md, change 14).
fn shrink_wasm(toolchain: &Toolchain, wasm: &Path) -> Result {
    let mut command = Command::new(&toolchain.wasm_opt);
    command.arg(wasm).arg("-Oz").arg("--strip-debug").arg("-o").arg(wasm);
    command.args(WASM_FEATURES.iter().map(|feature| format!("--enable-{feature}")));
    run(&mut command)
}

/// Puts `entry` in front of worker-build's output in `build`: its entry becomes `glue.js` and
/// ours `index.js`, the `main` the wrangler configs name. See `src/entry.mjs` for why (a plain
/// module export instead of a Proxy built per request).
fn install_entry(build: &Path, entry: &Path) -> Result {
    let (generated, glue) = (build.join("index.js"), build.join("glue.js"));
    std::fs::rename(&generated, &glue).map_err(|e| format!("{} → {}: {e}", generated.display(), glue.display()))?;
    std::fs::copy(entry, &generated).map_err(|e| format!("{} → {}: {e}", entry.display(), generated.display()))?;
    Ok(())
}

/// Builds the local canary gateway (`gateway/`, a second Worker) the same way, unless none of
/// its inputs changed; `gateway/wrangler.toml` and the rollout tests use its `gateway/build/`.
pub fn build_gateway(toolchain: &Toolchain) -> Result {
    build_package_worker(toolchain, "gateway", GATEWAY_INPUTS, None)
}

/// Builds the production front Worker (`front/`) into `front/build/`, unless none of its inputs
/// changed; `front/wrangler.toml`'s `[build] command` and the regional canary tests use it.
pub fn build_front(toolchain: &Toolchain) -> Result {
    build_package_worker(toolchain, "front", FRONT_INPUTS, Some("src/entry.mjs"))
}

/// `worker-build --release` in the package folder `package` (a Worker crate of the workspace),
/// skipped when the digest of `inputs` matches the one recorded in `<package>/build/`; `entry`
/// (relative to the package) becomes the build's `index.js` in front of worker-build's.
fn build_package_worker(toolchain: &Toolchain, package: &str, inputs: &[&str], entry: Option<&str>) -> Result {
    let root = &toolchain.root;
    let _lock = BuildLock::acquire(&root.join(format!("target/xtask-build-{package}.lock")))?;
    let digest = inputs_digest(root, inputs)?;
    let build = root.join(package).join("build");
    let stamp = build.join(".inputs.sha256");
    let built = build.join("index.js").is_file() && build.join("index_bg.wasm").is_file();
    if built && std::fs::read_to_string(&stamp).is_ok_and(|recorded| recorded.trim() == digest) {
        return Ok(());
    }
    // worker-build builds the package in its working directory.
    let mut command = Command::new(&toolchain.worker_build);
    command.current_dir(root.join(package)).arg("--release");
    toolchain.apply_env(&mut command);
    run(&mut command)?;
    shrink_wasm(toolchain, &build.join("index_bg.wasm"))?;
    if let Some(entry) = entry {
        install_entry(&build, &root.join(package).join(entry))?;
    }
    std::fs::write(&stamp, digest).map_err(|e| format!("{}: {e}", stamp.display()))
}

fn inputs_digest(root: &Path, inputs: &[&str]) -> Result<String> {
    let mut hasher = Sha256::new();
    for input in inputs {
        let mut files = Vec::new();
        collect_files(&root.join(input), &mut files)?;
        files.sort();
        for file in files {
            let content = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            hasher.update(file.strip_prefix(root).unwrap_or(&file).to_string_lossy().as_bytes());
            hasher.update([0]);
            hasher.update(Sha256::digest(&content));
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn collect_files(path: &Path, files: &mut Vec<std::path::PathBuf>) -> Result {
    if path.is_file() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for entry in entries {
        collect_files(&entry.map_err(|e| e.to_string())?.path(), files)?;
    }
    Ok(())
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies).
struct BuildLock {
    _file: std::fs::File,
}

impl BuildLock {
    fn acquire(path: &Path) -> Result<Self> {
        use std::os::fd::AsRawFd;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: flock(2) on a descriptor we own; it does not touch our memory.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if locked == 0 { Ok(Self { _file: file }) } else { Err(format!("cannot lock {}", path.display())) }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    /// `src/entry.mjs` in front of a stand-in for worker-build's glue: a panic or exception
    /// (thrown at once or as a rejected Promise) is recorded for the release gate and answered
    /// by the Worker's own failure answer; an answer records nothing; when the failure answer
    /// itself throws, the original error reaches the runtime.
    #[test]
    fn the_entry_records_a_failed_request_and_answers_it() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(root.join("src/entry.mjs"), dir.path().join("index.mjs")).unwrap();
        std::fs::write(
            dir.path().join("glue.js"),
            r#"export default class Entrypoint {}
Entrypoint.prototype.handleFetch = (request) => {
  if (request === "throws") throw new Error("panicked");
  if (request === "rejects") return Promise.reject(new Error("rejected"));
  return request === "async" ? Promise.resolve("answer") : "answer";
};
Entrypoint.prototype.answerFailure = (env, started) => {
  if (env.poisoned) throw new Error("module terminated");
  env.recorded.push(typeof started);
  return "failure answer";
};
Entrypoint.prototype.scheduled = () => {};
"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("run.mjs"),
            r#"import worker from "./index.mjs";
const outcome = async (request, env) => {
  try {
    return { answer: await worker.fetch(request, env, {}), recorded: env.recorded };
  } catch (error) {
    return { error: error.message, recorded: env.recorded };
  }
};
const results = [];
for (const request of ["sync", "async", "throws", "rejects"]) results.push(await outcome(request, { recorded: [] }));
results.push(await outcome("throws", { recorded: [], poisoned: true }));
console.log(JSON.stringify(results));
"#,
        )
        .unwrap();
        let node = local_stack::node::find_node(root).unwrap_or_else(|_| "node".into());
        let output = Command::new(node).arg(dir.path().join("run.mjs")).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let results: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            results,
            serde_json::json!([
                {"answer": "answer", "recorded": []},
                {"answer": "answer", "recorded": []},
                {"answer": "failure answer", "recorded": ["number"]},
                {"answer": "failure answer", "recorded": ["number"]},
                {"error": "panicked", "recorded": []},
            ])
        );
    }
}
