//! End to end: the release command drives the local gateway in front of real blue and green
//! builds of edgestack under `wrangler dev`, while simulated users keep a steady load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use release::plan::Split;
use release::routing::{StickyKey, bucket_bps};
use support::{Green, Load, Stack, one_at_a_time, unstable_users, user_keys};

/// 1000 users: 1.2 % of them fall in the 1 % stage (12 users), so the first stage sees real
/// green traffic and a bad build hurts about 1 % of requests before the gate stops it.
const USERS: usize = 1000;
const LOAD_THREADS: usize = 4;

fn everywhere(_: usize) -> &'static str {
    "na"
}

fn print_counts(label: &str, samples: &[support::Sample]) {
    let count = |version: &str| samples.iter().filter(|s| s.served_by.as_deref() == Some(version)).count();
    let failed = samples.iter().filter(|s| s.failed()).count();
    eprintln!("{label}: {} requests, {} blue, {} green, {failed} failed", samples.len(), count("blue"), count("green"));
}

#[test]
fn good_green_rolls_out_to_100_percent_without_failed_requests() {
    let _one = one_at_a_time();
    let stack = Stack::start(Green::default());
    let load = Load::start(stack.url(), user_keys(USERS), LOAD_THREADS, everywhere);
    std::thread::sleep(Duration::from_millis(500));

    let run = stack.release("1,10,50,100");
    std::thread::sleep(Duration::from_secs(1));
    let samples = load.stop();

    print_counts("good rollout", &samples);
    assert_eq!(run.code, Some(0), "{}", run.summary);
    assert_eq!(run.summary["outcome"], "promoted");
    let failed: Vec<_> = samples.iter().filter(|s| s.failed()).collect();
    assert!(failed.is_empty(), "{} failed requests: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    let unstable = unstable_users(&samples, USERS);
    assert!(unstable.is_empty(), "users that switched back or flapped: {:?}", &unstable[..unstable.len().min(5)]);
    let after: Vec<_> = samples.iter().filter(|s| s.sent > run.finished_at).collect();
    assert!(!after.is_empty(), "no load after the promotion");
    let blue: Vec<_> = after.iter().filter(|s| s.served_by.as_deref() != Some("green")).collect();
    assert!(blue.is_empty(), "blue still served after promotion: {:?}", &blue[..blue.len().min(5)]);
    // Every stage was seen by both versions until the last.
    let stats = stack.stats();
    assert!(stats.current.split.is_all_new());
    let staged: Vec<_> = stats.history.iter().filter(|w| w.green.requests > 0 && w.blue.requests > 0).collect();
    assert!(staged.len() >= 3, "stages with both versions: {staged:?}");
    eprintln!("good rollout took {:?}", run.took);
}

#[test]
fn faulty_green_is_rolled_back_at_the_first_stage() {
    let _one = one_at_a_time();
    let stack = Stack::start(Green { fault: Some("errors"), ..Green::default() });
    let load = Load::start(stack.url(), user_keys(USERS), LOAD_THREADS, everywhere);
    std::thread::sleep(Duration::from_millis(500));

    let run = stack.release("1,10,50,100");
    std::thread::sleep(Duration::from_secs(1));
    let samples = load.stop();

    print_counts("faulty rollout", &samples);
    assert_eq!(run.code, Some(1), "{}", run.summary);
    assert_eq!(run.summary["outcome"], "rolled_back");
    assert_eq!(run.summary["stage"], 1, "{}", run.summary);
    let window = &run.summary["window"];
    let stage_requests = window["old"]["requests"].as_u64().unwrap() + window["new"]["requests"].as_u64().unwrap();
    let failed = samples.iter().filter(|s| s.failed()).count() as u64;
    let share = failed as f64 * 100.0 / stage_requests as f64;
    eprintln!(
        "ROLLBACK: {failed} failed requests before the rollback, of {stage_requests} in the first stage ({share:.2} %); reason: {}",
        run.summary["reason"]
    );
    assert!(failed > 0, "the fault never reached a user: the test proves nothing");
    assert!(share < 2.0, "{failed} of {stage_requests} failed ({share:.2} %)");
    let after: Vec<_> = samples.iter().filter(|s| s.sent > run.finished_at).collect();
    assert!(!after.is_empty(), "no load after the rollback");
    assert!(after.iter().all(|s| s.served_by.as_deref() == Some("blue") && !s.failed()), "blue must serve 100 %");
    assert_eq!(stack.stats().current.split, Split::all_old());
}

#[test]
fn slow_green_is_rolled_back_at_the_first_stage() {
    let _one = one_at_a_time();
    let stack = Stack::start(Green { fault: Some("slow:400"), ..Green::default() });
    let load = Load::start(stack.url(), user_keys(USERS), LOAD_THREADS, everywhere);
    std::thread::sleep(Duration::from_millis(500));

    let run = stack.release("1,10,50,100");
    let samples = load.stop();

    print_counts("slow rollout", &samples);
    assert_eq!(run.code, Some(1), "{}", run.summary);
    assert_eq!(run.summary["stage"], 1, "{}", run.summary);
    assert!(run.summary["reason"].as_str().unwrap().contains("latency"), "{}", run.summary);
    assert!(samples.iter().all(|s| !s.failed()), "a slow build fails no request");
    assert_eq!(stack.stats().current.split, Split::all_old());
}

#[test]
fn override_header_pins_a_request_to_a_named_version() {
    let _one = one_at_a_time();
    let stack = Stack::start(Green::default());
    let pin = |value: &str| format!("edgestack=\"{value}\"");

    stack.set_split(&Split::all_old());
    let green = stack.get("/api/health", &[("cloudflare-workers-version-overrides", &pin("green"))]);
    assert_eq!((green.status, green.served_by()), (200, Some("green")));
    assert_eq!(green.header("x-edgestack-canary-reason"), Some("override"));
    let green_id = green.header("x-edgestack-version-id").unwrap().to_string();

    stack.set_split(&Split::all_new());
    let blue = stack.get("/api/health", &[("cloudflare-workers-version-overrides", &pin("blue"))]);
    assert_eq!(blue.served_by(), Some("blue"));
    let blue_id = blue.header("x-edgestack-version-id").unwrap().to_string();
    assert_ne!(blue_id, green_id, "the two builds must report different version ids");

    // By version id, as Cloudflare's header names it; and a user cookie does not outrank it.
    stack.set_split(&Split::all_old());
    let by_id = stack.get(
        "/api/health",
        &[("cloudflare-workers-version-overrides", &pin(&green_id)), ("cookie", "edgestack_canary=load-user-0001")],
    );
    assert_eq!(by_id.served_by(), Some("green"));
    let health: serde_json::Value = serde_json::from_str(&by_id.body).unwrap();
    assert_eq!(health["version"]["id"], green_id.as_str());

    // A first visit gets a sticky key; a returning user keeps theirs.
    let first = stack.get("/api/health", &[]);
    let set_cookie = first.header("set-cookie").unwrap_or_default();
    assert!(set_cookie.starts_with("edgestack_canary=") && set_cookie.contains("HttpOnly"), "{set_cookie}");
    let returning = stack.get("/api/health", &[("cookie", "edgestack_canary=load-user-0001")]);
    assert_eq!(returning.header("set-cookie"), None);
    // A page that mints a key is for that visitor's own cache only (RFC 9111 §7.3), as the
    // front Worker's is; a returning visitor's page stays public.
    let page = stack.get("/", &[]);
    assert!(page.header("set-cookie").is_some_and(|cookie| cookie.starts_with("edgestack_canary=")));
    assert_eq!(page.header("cache-control"), Some("private, max-age=0, must-revalidate"));
    let page_again = stack.get("/", &[("cookie", "edgestack_canary=load-user-0001")]);
    assert_eq!(page_again.header("cache-control"), Some("public, max-age=0, must-revalidate"));

    // Bodies and the worker's own cookies pass through: a sign-up on green, pinned by override,
    // answers with both the session cookie and the gateway's sticky key.
    let body = r#"{"email":"pinned@example.com","password":"correct horse battery staple"}"#;
    let signed_up = stack.post_json("/api/accounts", &[("cloudflare-workers-version-overrides", &pin("green"))], body);
    assert_eq!((signed_up.status, signed_up.served_by()), (201, Some("green")), "{}", signed_up.body);
    let cookies = signed_up.all("set-cookie");
    assert!(cookies.iter().any(|c| c.starts_with("__Host-edgestack_session=")), "{cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("edgestack_canary=")), "{cookies:?}");

    // Another worker's override, or an unknown version, leaves the split in charge.
    for header in [r#"other-worker="green""#.to_string(), pin("no-such-version")] {
        let answer = stack.get("/api/health", &[("cloudflare-workers-version-overrides", &header)]);
        assert_eq!(
            (answer.served_by(), answer.header("x-edgestack-canary-reason")),
            (Some("blue"), Some("split")),
            "{header}"
        );
    }
}

#[test]
fn one_region_goes_first_then_everyone() {
    let _one = one_at_a_time();
    let stack = Stack::start(Green::default());
    let keys = user_keys(60);

    stack.set_split(&Split { default_bps: 0, regions: [("eu".to_string(), 10_000)].into() });
    for key in &keys {
        let cookie = format!("edgestack_canary={key}");
        for (region, expected) in [("eu", "green"), ("na", "blue"), ("ap", "blue")] {
            let answer = stack.get("/api/health", &[("cookie", &cookie), ("x-edgestack-region", region)]);
            assert_eq!(answer.served_by(), Some(expected), "{key} in {region}");
        }
    }

    // The release command stages by region too: eu first, then 10 % everywhere, then all.
    let load = Load::start(stack.url(), user_keys(600), LOAD_THREADS, |user| ["eu", "na", "ap"][user % 3]);
    let run = stack.release("eu:100,*:10,*:100");
    let samples = load.stop();
    print_counts("regional rollout", &samples);
    assert_eq!(run.code, Some(0), "{}", run.summary);
    assert!(samples.iter().all(|s| !s.failed()));
    let stats = stack.stats();
    let eu_first =
        stats.history.iter().find(|w| w.split.regions.get("eu") == Some(&10_000) && w.split.default_bps == 0);
    assert!(eu_first.is_some_and(|w| w.green.requests > 0 && w.blue.requests > 0), "{:?}", stats.history);
}

#[test]
fn a_page_loaded_from_blue_keeps_its_assets_while_green_rolls_out() {
    let _one = one_at_a_time();
    let stack = Stack::start(Green { new_assets: true, ..Green::default() });
    // A user that stays on blue until 100 %.
    let key = (0..).map(|i| format!("asset-user-{i:04}")).find(|key| bucket_bps(key) >= 9_000).unwrap();
    assert!(StickyKey::parse(&key).is_some());
    let cookie = format!("edgestack_canary={key}");

    stack.set_split(&Split::all_old());
    let page = stack.get("/", &[("cookie", &cookie)]);
    assert_eq!((page.status, page.served_by()), (200, Some("blue")));
    let links = asset_links(&page.body);
    assert!(links.len() >= 3, "{links:?}");

    for split in [Split { default_bps: 5_000, ..Split::default() }, Split::all_new()] {
        stack.set_split(&split);
        for link in &links {
            let asset = stack.get(link, &[("cookie", &cookie)]);
            assert_eq!(asset.status, 200, "{link} at {}", split.describe());
        }
    }
    // At 100 % the user is on green, whose build lacks blue's files: the gateway found them on blue.
    let asset = stack.get(&links[0], &[("cookie", &cookie)]);
    assert_eq!((asset.served_by(), asset.header("x-edgestack-asset-fallback")), (Some("blue"), Some("1")));
    // And the page the user loads now is green's, with green's assets.
    let page = stack.get("/", &[("cookie", &cookie)]);
    assert_eq!(page.served_by(), Some("green"));
    let green_links = asset_links(&page.body);
    assert!(green_links.iter().all(|link| !links.contains(link)), "green should have new names");
    for link in &green_links {
        let asset = stack.get(link, &[("cookie", &cookie)]);
        assert_eq!((asset.status, asset.served_by()), (200, Some("green")), "{link}");
    }
    // A name neither build has is still a 404.
    assert_eq!(stack.get("/assets/app.0000000000.js", &[("cookie", &cookie)]).status, 404);
}

/// `/assets/...` references in a page.
fn asset_links(html: &str) -> Vec<String> {
    html.split("\"/assets/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|name| format!("/assets/{name}"))
        .collect()
}
