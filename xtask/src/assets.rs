//! Builds `dist/` (git-ignored, what `[assets] directory` names) from the site's source in
//! `public/`: files in `public/assets/` get their content hash in the name
//! (`app.css` → `app.3f9a1c2b4d.css`), references to them are rewritten, and `_headers`
//! carries the cache and security policy from edgestack-core.
//!
//! Hashes are taken after rewriting, so a CSS file that names a changed image changes too.
//!
//! A build for a tagged upload (`release deploy` sets `EDGESTACK_VERSION_TAG`) also names its tag
//! on every static response (`release::version_tag`); without the variable `_headers` is the
//! policy alone, so local builds do not change with every commit.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::Result;
use crate::tools::hex;

/// Text files whose references to other assets are rewritten, in dependency order: a later
/// kind may name an earlier one, never the reverse.
const REWRITTEN_KINDS: &[&str] = &["css", "js", "html"];

/// Original name → fingerprinted name, for files under `/assets/`.
pub type Manifest = BTreeMap<String, String>;

pub fn build_site(root: &Path) -> Result<Manifest> {
    let (source, output) = (root.join("public"), root.join("dist"));
    let files = read_tree(&source)?;
    let (mut outputs, manifest) = fingerprint(&files);
    let tag = std::env::var(release::version_tag::TAG_ENV).ok().filter(|tag| !tag.is_empty());
    outputs.insert("_headers".to_string(), headers_file(tag.as_deref())?.into_bytes());
    // Untouched when nothing changed: wrangler watches dist/ and reloads on any write.
    if output.is_dir() && read_tree(&output)? == outputs {
        return Ok(manifest);
    }
    // Replace dist/ whole so a renamed asset's old hash does not linger.
    if output.exists() {
        std::fs::remove_dir_all(&output).map_err(|e| format!("{}: {e}", output.display()))?;
    }
    for (relative, content) in outputs {
        let path = output.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, content).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(manifest)
}

/// `_headers`: edgestack-core's cache and security policy, and the upload's version tag if any.
fn headers_file(tag: Option<&str>) -> Result<String> {
    release::version_tag::with_tag_rule(edgestack_core::assets::headers_file(), tag).map_err(|e| e.to_string())
}

/// Relative path (with `/`) → content, for every file under `dir`.
fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| format!("{}: {e}", current.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).map_err(|e| e.to_string())?;
                let relative =
                    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                let content = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                files.insert(relative, content);
            }
        }
    }
    Ok(files)
}

fn extension(name: &str) -> &str {
    name.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("")
}

/// Pure core of the asset build: output files and the manifest.
pub fn fingerprint(files: &BTreeMap<String, Vec<u8>>) -> (BTreeMap<String, Vec<u8>>, Manifest) {
    let mut manifest = Manifest::new();
    let mut outputs = BTreeMap::new();
    let rank = |name: &str| REWRITTEN_KINDS.iter().position(|kind| *kind == extension(name)).map_or(0, |i| i + 1);
    let mut ordered: Vec<(&String, &Vec<u8>)> = files.iter().collect();
    ordered.sort_by_key(|(name, _)| (rank(name), name.as_str()));
    for (name, content) in ordered {
        let content = if rank(name) > 0 {
            match std::str::from_utf8(content) {
                Ok(text) => rewrite_references(text, &manifest).into_bytes(),
                Err(_) => content.clone(),
            }
        } else {
            content.clone()
        };
        match name.strip_prefix("assets/") {
            Some(asset) => {
                let hashed = hashed_name(asset, &content);
                manifest.insert(asset.to_string(), hashed.clone());
                outputs.insert(format!("assets/{hashed}"), content);
            }
            None => {
                outputs.insert(name.clone(), content);
            }
        }
    }
    (outputs, manifest)
}

fn hashed_name(name: &str, content: &[u8]) -> String {
    let hash = &hex(&Sha256::digest(content))[..10];
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{name}.{hash}"),
    }
}

/// Replaces `/assets/<name>` with its fingerprinted name wherever the reference ends at a
/// character that cannot continue a file name, so `/assets/app.js` never matches inside
/// `/assets/app.json`.
fn rewrite_references(text: &str, manifest: &Manifest) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find("/assets/") {
        let (before, from_prefix) = rest.split_at(index);
        result.push_str(before);
        let after_prefix = &from_prefix["/assets/".len()..];
        let name_len = after_prefix
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/')))
            .unwrap_or(after_prefix.len());
        let name = &after_prefix[..name_len];
        result.push_str("/assets/");
        result.push_str(manifest.get(name).map_or(name, String::as_str));
        rest = &after_prefix[name_len..];
    }
    result.push_str(rest);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(name, content)| (name.to_string(), content.as_bytes().to_vec())).collect()
    }

    #[test]
    fn assets_get_content_hashes_and_references_follow() {
        let (outputs, manifest) = fingerprint(&files(&[
            (
                "index.html",
                r#"<link href="/assets/app.css"><script src="/assets/app.js?x=1"></script><a href="/assets/app.json">"#,
            ),
            ("assets/app.css", "body { background: url(/assets/logo.svg) }"),
            ("assets/app.js", "fetch('/api/health')"),
            ("assets/logo.svg", "<svg/>"),
        ]));
        let css = &manifest["app.css"];
        let js = &manifest["app.js"];
        let svg = &manifest["logo.svg"];
        assert!(css.starts_with("app.") && css.ends_with(".css") && css.len() == "app..css".len() + 10, "{css}");
        let html = String::from_utf8(outputs["index.html"].clone()).unwrap();
        assert_eq!(
            html,
            format!(
                r#"<link href="/assets/{css}"><script src="/assets/{js}?x=1"></script><a href="/assets/app.json">"#
            )
        );
        let css_text = String::from_utf8(outputs[&format!("assets/{css}")].clone()).unwrap();
        assert_eq!(css_text, format!("body {{ background: url(/assets/{svg}) }}"));
        assert!(!outputs.contains_key("assets/app.css"));
    }

    #[test]
    fn a_changed_image_changes_the_css_that_names_it() {
        let before = fingerprint(&files(&[("assets/a.css", "x{b:url(/assets/i.png)}"), ("assets/i.png", "1")])).1;
        let after = fingerprint(&files(&[("assets/a.css", "x{b:url(/assets/i.png)}"), ("assets/i.png", "2")])).1;
        assert_ne!(before["i.png"], after["i.png"]);
        assert_ne!(before["a.css"], after["a.css"]);
    }

    #[test]
    fn headers_name_the_upload_tag_only_for_a_tagged_build() {
        let plain = headers_file(None).unwrap();
        assert_eq!(plain, edgestack_core::assets::headers_file());
        let tagged = headers_file(Some("9bc958b0a1c2")).unwrap();
        assert!(
            tagged.starts_with(&plain) && tagged.ends_with("/*\n  x-edgestack-version-tag: 9bc958b0a1c2\n"),
            "{tagged}"
        );
        assert!(headers_file(Some("no spaces allowed")).is_err());
    }

    #[test]
    fn same_content_same_name() {
        let input = files(&[("assets/app.js", "1")]);
        assert_eq!(fingerprint(&input).1, fingerprint(&input).1);
    }
}
