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

/// Text files whose references to other assets (`/assets/<name>`) are rewritten.
const REWRITTEN_KINDS: &[&str] = &["css", "js", "html"];

/// The text of a file whose references are rewritten; none for other kinds and for bytes that
/// are not UTF-8.
fn text_of<'a>(name: &str, content: &'a [u8]) -> Option<&'a str> {
    REWRITTEN_KINDS.contains(&extension(name)).then(|| std::str::from_utf8(content).ok()).flatten()
}

/// Original name → fingerprinted name, for files under `/assets/`.
pub type Manifest = BTreeMap<String, String>;

pub fn build_site(root: &Path) -> Result<Manifest> {
    let variable =
        |name: &str| std::env::var(name).ok().map(|value| value.trim().to_string()).filter(|v| !v.is_empty());
    let tag = variable(release::version_tag::TAG_ENV);
    let previous = variable(release::version_tag::PREVIOUS_REVISION_ENV);
    build_site_keeping(root, tag.as_deref(), previous.as_deref())
}

/// [`build_site`] with the upload's tag, and the revision whose fingerprinted files stay beside
/// the new ones (`previous`: the site's source in `public/` at that git revision, fingerprinted
/// as this build does; the new build's files win a name both have, which is the same content).
///
/// # Errors
/// Besides a failed build: `previous` names nothing git can read here (a shallow clone may lack
/// the commit); a release would otherwise upload without the old files, silently.
pub fn build_site_keeping(root: &Path, tag: Option<&str>, previous: Option<&str>) -> Result<Manifest> {
    let (source, output) = (root.join("public"), root.join("dist"));
    let files = read_tree(&source)?;
    let (mut outputs, manifest) = fingerprint(&files)?;
    let mut fingerprinted: Vec<String> = manifest.values().cloned().collect();
    if let Some(revision) = previous {
        let source = git_tree(root, revision, "public")?;
        if source.is_empty() {
            // A revision from before the site's source lived in `public/`: nothing to keep.
            eprintln!("xtask: {revision} has no public/; no static files of it are kept");
        }
        let (kept, kept_manifest) = fingerprint(&source)?;
        for (name, content) in kept.into_iter().filter(|(name, _)| name.starts_with("assets/")) {
            outputs.entry(name).or_insert(content);
        }
        fingerprinted.extend(kept_manifest.into_values().filter(|name| !manifest.values().any(|new| new == name)));
    }
    outputs.insert("_headers".to_string(), headers_file(fingerprinted.iter().map(String::as_str), tag)?.into_bytes());
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

/// `_headers`: the asset policy for the `fingerprinted` names, and the upload's tag if any.
///
/// # Errors
/// A tag that cannot stand in a header line; more rules than Workers Static Assets reads
/// ([`MAX_HEADER_RULES`](edgestack_core::assets::MAX_HEADER_RULES): one per fingerprinted file).
fn headers_file<'a>(fingerprinted: impl IntoIterator<Item = &'a str>, tag: Option<&str>) -> Result<String> {
    use edgestack_core::assets::{MAX_HEADER_RULES, header_rules};
    let file = release::version_tag::with_tag_rule(edgestack_core::assets::headers_file(fingerprinted), tag)
        .map_err(|e| e.to_string())?;
    let rules = header_rules(&file);
    if rules > MAX_HEADER_RULES {
        return Err(format!(
            "_headers would hold {rules} rules, over the {MAX_HEADER_RULES} Workers Static Assets reads (one per fingerprinted file, a release build's kept files of the replaced version included): bundle some assets"
        ));
    }
    Ok(file)
}

/// Relative path (with `/`) → content, for every file under `dir` (a path in the repository)
/// at git `revision` (exported as the previous release's build is, `local_stack::previous`);
/// empty when the revision has no such folder.
fn git_tree(root: &Path, revision: &str, dir: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let scratch = std::env::temp_dir().join(format!("edgestack-assets-{}-{revision}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let exported = local_stack::previous::export(root, revision, &scratch).map_err(|e| {
        format!(
            "{}={revision}: git cannot read `{dir}/` at that revision ({e}); fetch the commit (a shallow clone lacks it) or unset the variable",
            release::version_tag::PREVIOUS_REVISION_ENV
        )
    });
    let files = exported.and_then(|()| {
        let folder = scratch.join(dir);
        if folder.is_dir() { read_tree(&folder) } else { Ok(BTreeMap::new()) }
    });
    let _ = std::fs::remove_dir_all(&scratch);
    files
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
///
/// A file is hashed after the files it names (its references rewritten first), so a changed
/// file changes the name of every file that names it, whatever their kinds and names.
///
/// # Errors
/// When assets name each other in a cycle: no order gives each the hash of the others.
pub fn fingerprint(files: &BTreeMap<String, Vec<u8>>) -> Result<(BTreeMap<String, Vec<u8>>, Manifest)> {
    let mut manifest = Manifest::new();
    let mut outputs = BTreeMap::new();
    // Each file with the other assets it names that are not hashed yet.
    let mut pending: Vec<(&String, &Vec<u8>)> = files.iter().collect();
    while !pending.is_empty() {
        let waiting = |name: &String, content: &[u8], manifest: &Manifest| {
            text_of(name, content).is_some_and(|text| {
                references(text).any(|(_, named, _)| {
                    Some(named) != name.strip_prefix("assets/")
                        && files.contains_key(&format!("assets/{named}"))
                        && !manifest.contains_key(named)
                })
            })
        };
        let (ready, blocked): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(name, content)| !waiting(name, content, &manifest));
        if ready.is_empty() {
            let names = blocked.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(format!("assets name each other in a cycle, so none can be hashed first: {names}"));
        }
        for (name, content) in ready {
            let content = match text_of(name, content) {
                Some(text) => rewrite_references(text, &manifest).into_bytes(),
                None => content.clone(),
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
        pending = blocked;
    }
    Ok((outputs, manifest))
}

fn hashed_name(name: &str, content: &[u8]) -> String {
    let hash = &hex(&Sha256::digest(content))[..10];
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{name}.{hash}"),
    }
}

/// Replaces `/assets/<name>` with its fingerprinted name wherever the manifest has it.
fn rewrite_references(text: &str, manifest: &Manifest) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    for (before, name, after) in references(text) {
        result.push_str(before);
        result.push_str("/assets/");
        result.push_str(manifest.get(name).map_or(name, String::as_str));
        rest = after;
    }
    result.push_str(rest);
    result
}

/// Each `/assets/<name>` in `text`, as (the text before it since the last one, the name, the
/// text after it). A name ends at a character that cannot continue a file name, so
/// `/assets/app.js` never matches inside `/assets/app.json`.
fn references(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let index = rest.find("/assets/")?;
        let (before, from_prefix) = rest.split_at(index);
        let after_prefix = &from_prefix["/assets/".len()..];
        let name_len = after_prefix
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/')))
            .unwrap_or(after_prefix.len());
        let (name, after) = after_prefix.split_at(name_len);
        rest = after;
        Some((before, name, after))
    })
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
        ]))
        .unwrap();
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
        let before =
            fingerprint(&files(&[("assets/a.css", "x{b:url(/assets/i.png)}"), ("assets/i.png", "1")])).unwrap().1;
        let after =
            fingerprint(&files(&[("assets/a.css", "x{b:url(/assets/i.png)}"), ("assets/i.png", "2")])).unwrap().1;
        assert_ne!(before["i.png"], after["i.png"]);
        assert_ne!(before["a.css"], after["a.css"]);
    }

    /// A file naming another of its own kind that sorts after it (`app.js` importing
    /// `/assets/zz.js`, `a.css` importing `/assets/b.css`) once kept the unhashed reference (a
    /// 404 from dist/), and its own hash ignored the other's content, so its `immutable` copy
    /// was not busted when the other changed.
    #[test]
    fn every_reference_to_an_asset_resolves_to_a_built_file() {
        for (kind, reference) in [("js", "import '/assets/zz.js';"), ("css", "@import \"/assets/zz.css\";")] {
            let build = |other: &str| {
                fingerprint(&files(&[
                    (&format!("assets/app.{kind}"), reference),
                    (&format!("assets/zz.{kind}"), other),
                ]))
                .unwrap()
            };
            let (outputs, manifest) = build("1");
            let app =
                String::from_utf8(outputs[&format!("assets/{}", manifest[&format!("app.{kind}")])].clone()).unwrap();
            assert_eq!(app, reference.replace(&format!("zz.{kind}"), &manifest[&format!("zz.{kind}")]));
            assert_ne!(build("2").1[&format!("app.{kind}")], manifest[&format!("app.{kind}")], "{kind}");
        }
    }

    #[test]
    fn assets_that_name_each_other_are_refused() {
        let error = fingerprint(&files(&[
            ("assets/a.js", "import '/assets/b.js';"),
            ("assets/b.js", "import '/assets/a.js';"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(error.contains("assets/a.js, assets/b.js"), "{error}");
        // A file naming itself is no cycle: the name stays as written.
        let (outputs, manifest) = fingerprint(&files(&[("assets/a.js", "// see /assets/a.js")])).unwrap();
        assert_eq!(outputs[&format!("assets/{}", manifest["a.js"])], b"// see /assets/a.js");
    }

    #[test]
    fn headers_name_the_upload_tag_only_for_a_tagged_build() {
        let plain = headers_file(["app.1.js"], None).unwrap();
        assert_eq!(plain, edgestack_core::assets::headers_file(["app.1.js"]));
        let tagged = headers_file(["app.1.js"], Some("9bc958b0a1c2")).unwrap();
        assert!(
            tagged.starts_with(&plain) && tagged.ends_with("/*\n  x-edgestack-version-tag: 9bc958b0a1c2\n"),
            "{tagged}"
        );
        assert!(headers_file(["app.1.js"], Some("no spaces allowed")).is_err());
        let many: Vec<String> = (0..98).map(|n| format!("a{n}.1.js")).collect();
        assert!(headers_file(many.iter().map(String::as_str), Some("v1")).is_ok(), "98 files, the policy and the tag");
        let error = headers_file(many.iter().map(String::as_str).chain(["b.1.js"]), Some("v1")).unwrap_err();
        assert!(error.contains("101 rules, over the 100"), "{error}");
    }

    /// A page the old version served just before the promotion names the old version's files;
    /// the new upload must still have them (docs/releases.md, "Static asset skew").
    #[test]
    fn a_release_build_keeps_the_replaced_revisions_fingerprinted_files() {
        let repository = tempfile::tempdir().unwrap();
        let root = repository.path();
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git")
                .current_dir(root)
                .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
                .args(args)
                .output()
                .unwrap();
            assert!(status.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&status.stderr));
            String::from_utf8(status.stdout).unwrap().trim().to_string()
        };
        let write = |path: &str, content: &str| {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), content).unwrap();
        };
        git(&["init", "-q"]);
        write("public/index.html", "<script src=\"/assets/app.js\"></script>");
        write("public/assets/app.js", "old();");
        write("public/assets/logo.svg", "<svg/>");
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "old release"]);
        let old_revision = git(&["rev-parse", "HEAD"]);
        let old = build_site_keeping(root, None, None).unwrap();
        write("public/assets/app.js", "new();");

        let new = build_site_keeping(root, Some("v2"), Some(&old_revision)).unwrap();

        let dist = read_tree(&root.join("dist")).unwrap();
        assert_ne!(old["app.js"], new["app.js"]);
        assert_eq!(dist[&format!("assets/{}", old["app.js"])], b"old();", "the old page's script is kept");
        assert_eq!(dist[&format!("assets/{}", new["app.js"])], b"new();");
        assert_eq!(old["logo.svg"], new["logo.svg"], "unchanged, one file");
        let index = String::from_utf8(dist["index.html"].clone()).unwrap();
        assert!(
            index.contains(&new["app.js"]) && !index.contains(&old["app.js"]),
            "pages are the new build's: {index}"
        );
        let headers = String::from_utf8(dist["_headers"].clone()).unwrap();
        for name in [&old["app.js"], &new["app.js"], &new["logo.svg"]] {
            assert_eq!(headers.matches(&format!("/assets/{name}\n")).count(), 1, "{name} immutable once: {headers}");
        }
        // A plain build afterwards drops them again: only a release build keeps them.
        build_site_keeping(root, None, None).unwrap();
        assert!(!root.join("dist/assets").join(&old["app.js"]).exists());

        // A revision from before the site lived in public/ keeps nothing, and fails nothing.
        let empty_tree = git(&["hash-object", "-t", "tree", "/dev/null"]);
        let before_public = git(&["commit-tree", &empty_tree, "-m", "before public/"]);
        let built = build_site_keeping(root, None, Some(&before_public)).unwrap();
        assert_eq!(read_tree(&root.join("dist/assets")).unwrap().len(), built.len());

        let error = build_site_keeping(root, None, Some("0123456789abcdef")).unwrap_err();
        assert!(
            error.contains("EDGESTACK_PREVIOUS_ASSETS_REVISION=0123456789abcdef") && error.contains("fetch"),
            "{error}"
        );
    }

    #[test]
    fn same_content_same_name() {
        let input = files(&[("assets/app.js", "1")]);
        assert_eq!(fingerprint(&input).unwrap().1, fingerprint(&input).unwrap().1);
    }
}
