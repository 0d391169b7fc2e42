//! End to end: the production front Worker (`front/`) in a `wrangler dev` session of its own,
//! before the local canary stack's gateway — which routes by `Cloudflare-Workers-Version-Overrides`
//! as Cloudflare does — in front of real blue and green builds of edgestack.
//!
//! As in production, the new version (green) is deployed at 0 % (the gateway's split: all blue),
//! and the front Worker learns the rule through its vars — the same vars `release deploy` passes
//! as `wrangler deploy --var …` (`release::front::rule_vars`). A new rule is a new front session,
//! the local counterpart of a deployment. Every answer names the version that served it: the API
//! by version id and tag (the app Worker), static files by tag (`_headers` of a tagged build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use edgestack_core::region::RegionName;
use local_stack::canary::{CanaryOptions, CanaryPlacement};
use local_stack::front::FrontDev;
use release::front::{Canary, rule_vars};
use release::plan::Split;
use release::version_tag::VERSION_TAG_HEADER;
use support::{Answer, Stack, agent, fetch, one_at_a_time, post_json, tagged_public, user_keys};

const BLUE_TAG: &str = "blue-build";
const GREEN_TAG: &str = "green-build";
/// The gateway's name for the app Worker, as production's front names `edgestack`.
const APP_WORKER: &str = "edgestack";
const GATEWAY: &str = "edgestack-gateway";

/// The front Worker's vars: the rule `release deploy` would set, and development mode so the
/// `x-edgestack-region` header stands in for `request.cf` (a placeholder under `wrangler dev`).
fn front_vars(canary: Option<(&str, &str)>) -> Vec<(String, String)> {
    let canary = canary.map(|(version, region)| Canary {
        version: version.to_string(),
        regions: [RegionName::parse(region).unwrap()].into(),
    });
    let mut vars: Vec<(String, String)> =
        rule_vars(APP_WORKER, canary.as_ref()).into_iter().map(|(name, value)| (name.to_string(), value)).collect();
    vars.push(("EDGESTACK_ENV".into(), "development".into()));
    vars
}

/// What a user sees: which build answered, by the gateway's label, the API's version id, and
/// the static files' version tag.
#[derive(Debug, PartialEq)]
struct Seen {
    served_by: String,
    version_id: String,
    page_tag: String,
    asset_tag: String,
}

struct Visitor<'a> {
    agent: ureq::Agent,
    asset: &'a str,
}

impl Visitor<'_> {
    fn get(&self, base: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let answer = fetch(&self.agent, &format!("{base}{path}"), headers);
        assert!(answer.status == 200 || answer.status == 304, "{path}: {} {}", answer.status, answer.body);
        answer
    }

    /// One user's visit from `region`: the API, the page and one fingerprinted asset.
    fn visit(&self, base: &str, user: &str, region: &str) -> Seen {
        let cookie = format!("edgestack_canary={user}");
        let headers = [("cookie", cookie.as_str()), ("x-edgestack-region", region)];
        let api = self.get(base, "/api/health", &headers);
        let page = self.get(base, "/", &headers);
        let asset = self.get(base, self.asset, &headers);
        let header = |answer: &Answer, name: &str| answer.header(name).unwrap_or("<none>").to_string();
        let served = [&api, &page, &asset].map(|answer| header(answer, "x-edgestack-served-by"));
        assert!(served.iter().all(|by| *by == served[0]), "{user} in {region}: one visit, one version: {served:?}");
        Seen {
            served_by: served[0].clone(),
            version_id: header(&api, "x-edgestack-version-id"),
            page_tag: header(&page, VERSION_TAG_HEADER),
            asset_tag: header(&asset, VERSION_TAG_HEADER),
        }
    }
}

#[test]
fn the_front_worker_sends_one_regions_users_to_green_and_everyone_else_to_blue() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("edgestack-regional-").tempdir().unwrap();
    let registry = dir.path().join("registry");
    let options = CanaryOptions {
        green_vars: Vec::new(),
        green_assets: Some(tagged_public(dir.path(), "green-public", GREEN_TAG)),
    };
    let placement = CanaryPlacement {
        registry: Some(registry.clone()),
        blue_assets: Some(tagged_public(dir.path(), "blue-public", BLUE_TAG)),
    };
    let stack = Stack::start_placed(dir, options, placement);
    // A fingerprinted script of the build both versions serve (`dist/`, not the source in `public/`).
    let asset = std::fs::read_dir(local_stack::workspace_root().join("dist/assets"))
        .unwrap()
        .map(|entry| format!("/assets/{}", entry.unwrap().file_name().to_string_lossy()))
        .find(|path| path.ends_with(".js") && path.matches('.').count() >= 2)
        .expect("a fingerprinted script in dist/assets");
    let visitor = Visitor { agent: agent(), asset: &asset };

    // The new version is deployed at 0 %: without the front Worker, everyone gets blue.
    stack.set_split(&Split::all_old());
    let id_of = |name: &str| {
        let pinned =
            stack.get("/api/health", &[("cloudflare-workers-version-overrides", &format!("{APP_WORKER}=\"{name}\""))]);
        pinned.header("x-edgestack-version-id").unwrap().to_string()
    };
    let (blue_id, green_id) = (id_of("blue"), id_of("green"));
    assert_ne!(blue_id, green_id);
    let blue = |seen: &Seen| {
        *seen
            == Seen {
                served_by: "blue".into(),
                version_id: blue_id.clone(),
                page_tag: BLUE_TAG.into(),
                asset_tag: BLUE_TAG.into(),
            }
    };
    let green = |seen: &Seen| {
        *seen
            == Seen {
                served_by: "green".into(),
                version_id: green_id.clone(),
                page_tag: GREEN_TAG.into(),
                asset_tag: GREEN_TAG.into(),
            }
    };

    // The rule: eu's users to green, named by its version id, as release deploy sets it.
    let front = FrontDev::start(&registry, GATEWAY, front_vars(Some((&green_id, "eu")))).unwrap();
    eprintln!("stack and front Worker ready in {:?}", started.elapsed());
    let users = user_keys(20);
    for user in &users {
        let seen = visitor.visit(front.url(), user, "eu");
        assert!(green(&seen), "{user} in eu through the front Worker: {seen:?}");
        for region in ["na", "ap"] {
            let seen = visitor.visit(front.url(), user, region);
            assert!(blue(&seen), "{user} in {region} through the front Worker: {seen:?}");
        }
        // The front Worker makes the difference: straight to the gateway, eu is on blue.
        let direct = visitor.visit(stack.url(), user, "eu");
        assert!(blue(&direct), "{user} in eu, straight to the gateway: {direct:?}");
    }
    let pinned = fetch(&visitor.agent, &format!("{}/api/health", front.url()), &[("x-edgestack-region", "eu")]);
    assert_eq!(pinned.header("x-edgestack-canary-reason"), Some("override"), "the gateway saw the front's override");
    // A body and the app's cookies pass through the front Worker's copy of the request.
    let sign_up = r#"{"email":"front-eu@example.com","password":"correct horse battery staple"}"#;
    let signed_up =
        post_json(&visitor.agent, &format!("{}/api/accounts", front.url()), &[("x-edgestack-region", "eu")], sign_up);
    assert_eq!((signed_up.status, signed_up.served_by()), (201, Some("green")), "{}", signed_up.body);
    let cookies = signed_up.all("set-cookie");
    assert!(cookies.iter().any(|cookie| cookie.starts_with("__Host-edgestack_session=")), "{cookies:?}");

    // request.cf decides in production: a rule for `na` (wrangler dev's placeholder location is
    // continent NA, colo DFW) pins requests without the region header, and the app Worker still
    // sees request.cf after the front Worker's copy of the request.
    drop(front);
    let front = FrontDev::start(&registry, GATEWAY, front_vars(Some((&green_id, "na")))).unwrap();
    let region_of =
        |answer: &Answer| serde_json::from_str::<serde_json::Value>(&answer.body).unwrap()["region"].clone();
    let by_cf = fetch(&visitor.agent, &format!("{}/api/health", front.url()), &[]);
    assert_eq!((by_cf.status, by_cf.served_by()), (200, Some("green")), "{}", by_cf.body);
    let direct = fetch(&visitor.agent, &format!("{}/api/health", stack.url()), &[]);
    assert_eq!(direct.served_by(), Some("blue"));
    assert_eq!(region_of(&direct)["colo"], "DFW", "the placeholder cf reaches the app directly: {}", direct.body);
    assert_eq!(region_of(&by_cf), region_of(&direct), "request.cf survives the front Worker's copy");

    // Clearing the rule (promotion or rollback) puts eu back on the deployment's split.
    drop(front);
    let front = FrontDev::start(&registry, GATEWAY, front_vars(None)).unwrap();
    for user in &users[..5] {
        let seen = visitor.visit(front.url(), user, "eu");
        assert!(blue(&seen), "{user} in eu after the rule was cleared: {seen:?}");
    }

    // Version affinity: the front Worker gives each new visitor one key (its cookie) and sends
    // it as Cloudflare-Workers-Version-Key, which decides the version at every share (the
    // gateway assigns by it as Cloudflare does): a first visit's version is every later one's,
    // through the front or straight to the gateway.
    stack.set_split(&Split { default_bps: 5_000, ..Split::default() });
    let mut first_versions = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let first = fetch(&visitor.agent, &format!("{}/api/health", front.url()), &[]);
        let set_cookies = first.all("set-cookie");
        let keys: Vec<&str> = set_cookies.iter().copied().filter(|c| c.starts_with("edgestack_canary=")).collect();
        assert_eq!(keys.len(), 1, "one key per new visitor: {set_cookies:?}");
        let cookie = keys[0].split(';').next().unwrap();
        for base in [front.url(), stack.url()] {
            let later = fetch(&visitor.agent, &format!("{base}/api/health"), &[("cookie", cookie)]);
            assert_eq!(later.served_by(), first.served_by(), "{cookie}, later at {base}");
        }
        first_versions.insert(first.served_by().unwrap().to_string());
    }
    assert_eq!(first_versions.len(), 2, "a 50 % share gives new visitors both versions: {first_versions:?}");
    stack.set_split(&Split::all_old());

    // What the extra hop costs here (two cores, all of it local): p50 of /api/health, requests
    // through the front Worker and straight to the gateway taking turns, so load drifts hit both.
    let (mut through_front, mut direct) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let cookie = format!("edgestack_canary={}", users[i % users.len()]);
        let (base, times) = if i % 2 == 0 { (front.url(), &mut through_front) } else { (stack.url(), &mut direct) };
        let sent = Instant::now();
        let answer = fetch(&visitor.agent, &format!("{base}/api/health"), &[("cookie", &cookie)]);
        times.push(sent.elapsed());
        assert_eq!(answer.status, 200);
    }
    let p50 = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    eprintln!(
        "p50 /api/health: {:?} through the front Worker, {:?} straight to the gateway",
        p50(&mut through_front),
        p50(&mut direct)
    );
    eprintln!("regional canary test took {:?}", started.elapsed());
}
