//! Starts and stops the pieces of edgestack's local stack, shared by xtask, tests and benchmarks.
//!
//! Every process is started in its own process group and stopped with it on drop, on a
//! handled signal, and — through a guardian process — when the program is killed outright,
//! so no way of ending a test, a benchmark or `cargo xtask dev` leaves `workerd` or a database
//! server behind ([`process`]).

pub mod canary;
pub mod cargo;
pub mod devdb;
pub mod front;
mod guardian;
#[cfg(target_os = "linux")]
pub mod inspect;
pub mod latency_proxy;
pub mod lock;
pub mod node;
pub mod previous;
pub mod process;
pub mod services;
pub mod wrangler;

use std::path::PathBuf;

/// The workspace root (where `wrangler.toml` and `package.json` live).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().and_then(|crates| crates.parent()).map(PathBuf::from).unwrap_or(manifest_dir)
}

/// A TCP port that was free a moment ago. Another process may take it before it is used;
/// callers that start servers retry on a bind failure.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// `bytes` random bytes from the OS as lowercase hex, for tokens of local stacks.
pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut buffer))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}
