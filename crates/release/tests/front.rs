//! End to end: the production front Worker (`front/`, built) in `wrangler dev` before a Worker
//! that answers with what reached it (an echo), so every header, body and answer the front
//! passes on is seen exactly as the app Worker would see it — without the canary stack.
//!
//! What Cloudflare does with the headers the front sets (version affinity, overrides) is not
//! played here; the gateway plays it in `regional.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Read;

use local_stack::front::FrontDev;
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};
use release::front::{Canary, rule_vars};
use release::routing::{CANARY_COOKIE, VERSION_KEY_HEADER, VERSION_OVERRIDE_HEADER};
use support::{Answer, agent, fetch, one_at_a_time};

/// The Worker behind the front: `/echo` answers with the method, the headers and the SHA-256
/// of the body it received; the other paths give the answers a proxy must pass on unchanged.
const ECHO_WORKER: &str = r#"
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/api/health") return Response.json({ ok: true });
    if (path === "/throw") throw new Error("the app broke");
    if (path === "/throw-later") {
      await request.arrayBuffer();
      throw new Error("the app broke later");
    }
    if (path === "/echo") {
      const body = await request.arrayBuffer();
      const headers = Object.fromEntries(request.headers);
      const sha256 = hex(await crypto.subtle.digest("SHA-256", body));
      return Response.json({ method: request.method, headers, length: body.byteLength, sha256 });
    }
    if (path === "/cookies") {
      const headers = new Headers({ "content-type": "application/json" });
      headers.append("set-cookie", "a=1; Path=/; HttpOnly");
      headers.append("set-cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/");
      return new Response("{}", { headers });
    }
    if (path === "/redirect") return new Response(null, { status: 302, headers: { location: "/echo" } });
    if (path === "/immutable") {
      return new Response("asset", { headers: { "cache-control": "public, max-age=31536000, immutable" } });
    }
    if (path === "/etag") {
      const headers = { etag: '"v1"', "content-type": "text/plain" };
      if (request.headers.get("if-none-match") === '"v1"') return new Response(null, { status: 304, headers });
      return new Response("version one", { headers });
    }
    return Response.json({ error: { code: "not_found", message: path } }, { status: 404 });
  },
};
"#;

const ECHO_NAME: &str = "front-echo";
const GREEN_ID: &str = "5d3e8a2c-0bd1-4c9a-9d8c-1f5e3a7b9c01";

struct Stage {
    front: FrontDev,
    _echo: WranglerDev,
    _dir: tempfile::TempDir,
}

/// The echo Worker and, in a session of its own sharing its dev registry, the front Worker
/// bound to it with `canary` (`(version, region)`) as its rule, in development mode so the
/// `x-edgestack-region` header stands in for `request.cf`.
fn start(canary: Option<(&str, &str)>) -> Stage {
    let dir = tempfile::Builder::new().prefix("edgestack-front-").tempdir().unwrap();
    // A folder of its own: an unbundled Worker's session reloads when its folder changes, and
    // the dev registry beside it changes as the front's session starts.
    let echo_dir = dir.path().join("echo");
    std::fs::create_dir(&echo_dir).unwrap();
    std::fs::write(echo_dir.join("echo.mjs"), ECHO_WORKER).unwrap();
    let config = echo_dir.join("wrangler.toml");
    std::fs::write(
        &config,
        // Unbundled, so wrangler adds none of its dev middleware: with it an exception became a
        // 500 answer, where production rejects the caller's call.
        format!("name = \"{ECHO_NAME}\"\nmain = \"echo.mjs\"\ncompatibility_date = \"2026-11-01\"\nno_bundle = true\n"),
    )
    .unwrap();
    let registry = dir.path().join("registry");
    let options = WranglerDevOptions { configs: vec![config], ..WranglerDevOptions::default() };
    let echo = WranglerDev::start_in_registry(options, &registry).unwrap();
    let canary = canary.map(|(version, region)| Canary {
        version: version.to_string(),
        regions: [edgestack_core::region::RegionName::parse(region).unwrap()].into(),
    });
    let mut vars: Vec<(String, String)> =
        rule_vars("edgestack", canary.as_ref()).into_iter().map(|(name, value)| (name.to_string(), value)).collect();
    vars.push(("EDGESTACK_ENV".into(), "development".into()));
    let front = FrontDev::start(&registry, ECHO_NAME, vars).unwrap();
    Stage { front, _echo: echo, _dir: dir }
}

impl Stage {
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        fetch(&agent(), &format!("{}{path}", self.front.url()), headers)
    }

    /// The end of both sessions' logs, for a failure's message.
    fn logs(&self) -> String {
        format!("front:\n{}\necho:\n{}", self.front.dev.log_tail(), self._echo.log_tail())
    }

    /// What the app Worker received for a GET of `/echo` with `headers`, and the answer.
    fn echo(&self, headers: &[(&str, &str)]) -> (serde_json::Value, Answer) {
        let answer = self.get("/echo", headers);
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, self.logs());
        (serde_json::from_str(&answer.body).unwrap(), answer)
    }
}

/// The `edgestack_canary` keys the answer sets.
fn minted_keys(answer: &Answer) -> Vec<String> {
    answer
        .all("set-cookie")
        .iter()
        .filter_map(|cookie| cookie.strip_prefix(&format!("{CANARY_COOKIE}=")))
        .map(|rest| rest.split(';').next().unwrap().to_string())
        .collect()
}

/// Cloudflare keeps a user on one version of a gradual deployment only when each request
/// carries the same `Cloudflare-Workers-Version-Key`; nothing else in production mints a key.
#[test]
fn every_visitor_carries_one_version_key_from_the_first_request_on() {
    let _one = one_at_a_time();
    let stage = start(None);

    // A first visit: the key the app is asked with is the one the answer sets.
    let (seen, first) = stage.echo(&[]);
    let minted = minted_keys(&first);
    assert_eq!(minted.len(), 1, "one key per new visitor: {:?}", first.all("set-cookie"));
    let key = &minted[0];
    assert_eq!(seen["headers"][VERSION_KEY_HEADER], key.as_str(), "{seen}");
    let cookie = first.all("set-cookie").into_iter().find(|c| c.starts_with(CANARY_COOKIE)).unwrap().to_string();
    for attribute in ["Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }

    // Every later request: the same key, from the cookie; nothing new to set. A key the client
    // names in the header itself does not replace its cookie's.
    let with_cookie = format!("theme=dark; {CANARY_COOKIE}={key}");
    for headers in
        [vec![("cookie", with_cookie.as_str())], vec![("cookie", &with_cookie), (VERSION_KEY_HEADER, "mine")]]
    {
        let (seen, answer) = stage.echo(&headers);
        assert_eq!(seen["headers"][VERSION_KEY_HEADER], key.as_str(), "{headers:?}: {seen}");
        assert!(minted_keys(&answer).is_empty(), "{headers:?}: {:?}", answer.all("set-cookie"));
    }

    // A cookie that is no key (too short, a character outside the key's, far too long) is
    // replaced by a new key, which is what the app is asked with.
    let huge = format!("{CANARY_COOKIE}={}", "k".repeat(4000));
    for cookie in [format!("{CANARY_COOKIE}=short"), format!("{CANARY_COOKIE}=bad key!"), huge] {
        let (seen, answer) = stage.echo(&[("cookie", &cookie)]);
        let minted = minted_keys(&answer);
        assert_eq!(minted.len(), 1, "{:?}", answer.all("set-cookie"));
        assert_eq!(seen["headers"][VERSION_KEY_HEADER], minted[0].as_str(), "{seen}");
        assert_ne!(&minted[0], key);
    }

    // A client without cookies that keeps its own key (an API client) keeps it; none is minted.
    let (seen, answer) = stage.echo(&[(VERSION_KEY_HEADER, "api-client-0007")]);
    assert_eq!(seen["headers"][VERSION_KEY_HEADER], "api-client-0007", "{seen}");
    assert!(minted_keys(&answer).is_empty(), "{:?}", answer.all("set-cookie"));

    // New visitors get keys of their own.
    let others: std::collections::BTreeSet<String> =
        (0..5).flat_map(|_| minted_keys(&stage.get("/echo", &[]))).collect();
    assert_eq!(others.len(), 5, "{others:?}");
    assert!(!others.contains(key));
}

/// RFC 9111 §7.3: `Set-Cookie` does not keep a response out of a shared cache. A new visitor's
/// key on an immutable asset (or a page) stored there went to every later client of that cache
/// for a year — replacing returning users' own keys, so they changed versions mid-rollout.
#[test]
fn a_minted_key_is_never_on_an_answer_shared_caches_may_keep() {
    let _one = one_at_a_time();
    let stage = start(None);

    let new_visitor = stage.get("/immutable", &[]);
    assert_eq!(minted_keys(&new_visitor).len(), 1, "{:?}", new_visitor.headers);
    assert_eq!(new_visitor.header("cache-control"), Some("private, max-age=31536000, immutable"));
    assert_eq!(new_visitor.body, "asset");
    let (_, without_policy) = stage.echo(&[]);
    assert_eq!(without_policy.header("cache-control"), Some("private"), "no heuristic storing either");

    let returning = format!("{CANARY_COOKIE}=returning-visitor-1");
    let returning = stage.get("/immutable", &[("cookie", &returning)]);
    assert!(minted_keys(&returning).is_empty());
    assert_eq!(returning.header("cache-control"), Some("public, max-age=31536000, immutable"), "untouched");
}

#[test]
fn requests_and_answers_pass_through_the_front_unchanged() {
    let _one = one_at_a_time();
    let stage = start(None);
    let url = |path: &str| format!("{}{path}", stage.front.url());
    let agent = agent();
    let sha256_hex = |bytes: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };

    // A large upload, with a length and chunked, reaches the app byte for byte.
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let sized = agent.post(&url("/echo")).header("content-type", "application/octet-stream").send(&body[..]).unwrap();
    let chunked = agent
        .post(&url("/echo"))
        .header("content-type", "application/octet-stream")
        .send(ureq::SendBody::from_reader(&mut &body[..]))
        .unwrap();
    for (label, mut response) in [("sized", sized), ("chunked", chunked)] {
        let seen: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(
            (seen["method"].as_str(), seen["length"].as_u64()),
            (Some("POST"), Some(3_000_000)),
            "{label}: {seen}\n{}",
            stage.logs()
        );
        assert_eq!(seen["sha256"], sha256_hex(&body), "{label}");
    }

    // HEAD: the head of a GET, no body. (Identity: the runtime labels a HEAD answer gzip, as
    // it would the GET's body, with or without the front, and an empty gzip body is no gzip.)
    let mut head = agent.head(&url("/echo")).header("accept-encoding", "identity").call().unwrap();
    assert_eq!(head.status(), 200);
    let mut rest = Vec::new();
    head.body_mut().as_reader().read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    // A revalidation: the app's 304, not a 200.
    let fresh = stage.get("/etag", &[]);
    assert_eq!((fresh.status, fresh.body.as_str(), fresh.header("etag")), (200, "version one", Some("\"v1\"")));
    let revalidated = stage.get("/etag", &[("if-none-match", "\"v1\"")]);
    assert_eq!((revalidated.status, revalidated.body.as_str()), (304, ""));

    // A redirect is the client's to follow, not the front's.
    let redirect = stage.get("/redirect", &[]);
    assert_eq!((redirect.status, redirect.header("location")), (302, Some("/echo")));

    // The app's cookies stay separate fields, beside the front's own for a new visitor.
    let returning = format!("{CANARY_COOKIE}=returning-visitor-1");
    let cookies = stage.get("/cookies", &[("cookie", &returning)]);
    assert_eq!(
        cookies.all("set-cookie"),
        ["a=1; Path=/; HttpOnly", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/"],
        "{:?}",
        cookies.headers
    );
    let new_visitor = stage.get("/cookies", &[]);
    let set: Vec<&str> = new_visitor.all("set-cookie");
    assert_eq!(set.len(), 3, "{set:?}");
    assert_eq!(&set[..2], ["a=1; Path=/; HttpOnly", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/"]);
    assert!(set[2].starts_with(&format!("{CANARY_COOKIE}=")), "{set:?}");

    // The app's own error answer is the client's, status and body.
    let missing = stage.get("/nowhere", &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("not_found"), "{}", missing.body);
}

/// An app Worker that throws (a bug, or a limit the runtime enforces) rejects the front's call:
/// without a catch the client got the runtime's own HTML error page, not the API's JSON.
#[test]
fn an_app_that_fails_to_answer_is_a_json_503_from_the_front() {
    let _one = one_at_a_time();
    let stage = start(None);
    let returning = format!("{CANARY_COOKIE}=returning-visitor-1");
    for path in ["/throw", "/throw-later"] {
        // A returning visitor's answer is the app's promise itself; a new visitor's is awaited.
        for headers in [vec![("cookie", returning.as_str())], vec![]] {
            let answer = stage.get(path, &headers);
            assert_eq!(answer.status, 503, "{path} {headers:?}: {}", answer.body);
            assert_eq!(answer.header("content-type"), Some("application/json"), "{path}");
            assert_eq!(answer.header("retry-after"), Some("5"), "{path}");
            assert_eq!(answer.header("cache-control"), Some("private, no-store"), "{path}");
            let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
            assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
    }
    // A HEAD is told the same without a body (identity: see the HEAD in the pass-through test).
    let mut head = agent()
        .head(&format!("{}/throw", stage.front.url()))
        .header("cookie", &returning)
        .header("accept-encoding", "identity")
        .call()
        .unwrap();
    assert_eq!(head.status(), 503);
    assert_eq!(head.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let mut rest = Vec::new();
    head.body_mut().as_reader().read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // The front itself is unharmed: the next request passes through as before.
    let (seen, _) = stage.echo(&[("cookie", &returning)]);
    assert_eq!(seen["method"], "GET");
}

#[test]
fn the_canary_regions_requests_carry_the_override_and_a_testers_pin_is_left_alone() {
    let _one = one_at_a_time();
    let stage = start(Some((GREEN_ID, "eu")));
    let ours = format!("edgestack=\"{GREEN_ID}\"");

    let (seen, _) = stage.echo(&[("x-edgestack-region", "eu")]);
    assert_eq!(seen["headers"][VERSION_OVERRIDE_HEADER], ours.as_str(), "{seen}");
    let (seen, _) = stage.echo(&[("x-edgestack-region", "na")]);
    assert!(seen["headers"].get(VERSION_OVERRIDE_HEADER).is_none(), "{seen}");
    // Another Worker's entry is kept; a tester's own pin for the app Worker is not rewritten.
    let (seen, _) = stage.echo(&[("x-edgestack-region", "eu"), (VERSION_OVERRIDE_HEADER, "billing=\"abc\"")]);
    assert_eq!(seen["headers"][VERSION_OVERRIDE_HEADER], format!("billing=\"abc\", {ours}"), "{seen}");
    let (seen, _) = stage.echo(&[("x-edgestack-region", "eu"), (VERSION_OVERRIDE_HEADER, "edgestack=\"blue-id\"")]);
    assert_eq!(seen["headers"][VERSION_OVERRIDE_HEADER], "edgestack=\"blue-id\"", "{seen}");
    // Pinned requests carry the version key too (it decides again once the rule is cleared).
    let (seen, answer) = stage.echo(&[("x-edgestack-region", "eu")]);
    assert_eq!(seen["headers"][VERSION_KEY_HEADER].as_str(), minted_keys(&answer).first().map(String::as_str));
}
