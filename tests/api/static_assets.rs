use edgestack_core::assets::{CONTENT_SECURITY_POLICY, IMMUTABLE};

use crate::helpers::{TestResponse, spawn_app};

fn assert_security_headers(response: &TestResponse) {
    assert_eq!(response.header("content-security-policy"), Some(CONTENT_SECURITY_POLICY));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert!(response.header("strict-transport-security").is_some_and(|v| v.starts_with("max-age=")));
}

/// `/assets/...` references in the page, in order of appearance.
fn asset_links(html: &str) -> Vec<String> {
    html.split("\"/assets/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|name| format!("/assets/{name}"))
        .collect()
}

#[test]
fn index_page_revalidates_and_links_fingerprinted_assets() {
    let app = spawn_app();

    let page = app.get("/");

    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let cache = page.header("cache-control").unwrap_or_default();
    assert!(cache.contains("max-age=0") && cache.contains("must-revalidate"), "{cache}");
    assert!(page.header("etag").is_some());
    assert_security_headers(&page);
    let links = asset_links(&page.text());
    assert!(links.len() >= 3, "expected css, js and an image: {links:?}");
    for (suffix, content_type) in [(".css", "text/css"), (".js", "javascript"), (".svg", "image/svg+xml")] {
        let link = links.iter().find(|l| l.ends_with(suffix)).unwrap_or_else(|| panic!("no {suffix} in {links:?}"));
        let asset = app.get(link);
        assert_eq!(asset.status, 200, "{link}");
        assert!(
            asset.header("content-type").unwrap_or_default().contains(content_type),
            "{link}: {:?}",
            asset.header("content-type")
        );
        assert_eq!(asset.header("cache-control"), Some(IMMUTABLE), "{link}");
        assert_security_headers(&asset);
    }
}

#[test]
fn revalidation_answers_304() {
    let app = spawn_app();
    let page = app.get("/");
    let etag = page.header("etag").unwrap().to_string();
    let again = app.request("GET", "/", &[("if-none-match", &etag)], None);
    assert_eq!(again.status, 304);
}

#[test]
fn unfingerprinted_names_and_unknown_pages_are_404() {
    let app = spawn_app();
    let source_name = app.get("/assets/app.css");
    assert_eq!(source_name.status, 404);
    // A name no build has must not be kept for a year: asked for too early, it would stay a
    // 404 in every cache after the deploy that brings it.
    let cache = source_name.header("cache-control").unwrap_or_default();
    assert!(!cache.contains("immutable") && !cache.contains("max-age=31536000"), "{cache}");
    let missing = app.get("/no/such/page");
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("Not found"), "{}", missing.text());
}
