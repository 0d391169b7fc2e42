//! Issue #11 items 2 and 3: validators and cookies as clients, CDNs and HTTP/2 deliver them.

use serde_json::json;

use crate::support::{Options, Shape, Stack, signed_up};

fn published(stack: &mut Stack) -> String {
    let author = stack.client("na");
    signed_up(stack, &author, "etag@example.com");
    let created = stack.send(author.post("/api/notes").json(json!({"title": "t", "body": "b"})).send());
    let id = created.json()["note"]["id"].as_str().unwrap().to_string();
    assert_eq!(stack.send(author.put(&format!("/api/notes/{id}/publication")).send()).status(), 200);
    id
}

#[test]
fn a_weakened_or_listed_etag_revalidates_every_public_route() {
    for mut stack in [Stack::monolith(), Stack::services()] {
        let id = published(&mut stack);
        let reader = stack.client("na");
        for path in
            [format!("/api/public/notes/{id}"), "/api/public/notes".to_string(), "/api/public/notes?limit=5".into()]
        {
            let first = stack.send(reader.get(&path).send());
            let etag = first.header("etag").unwrap_or_else(|| panic!("{path} has no ETag")).to_string();
            let opaque = etag.trim_matches('"');
            for (if_none_match, expected) in [
                (etag.clone(), 304),
                (format!("W/{etag}"), 304),
                (format!("\"other\", W/{etag}"), 304),
                ("*".to_string(), 304),
                ("\"other\"".to_string(), 200),
                (format!("W/\"{opaque}x\""), 200),
                (opaque.to_string(), 200),
            ] {
                let again = stack.send(reader.get(&path).header("if-none-match", &if_none_match).send());
                assert_eq!(again.status(), expected, "{path} with If-None-Match: {if_none_match}");
                if expected == 304 {
                    assert!(again.0.body.is_empty());
                    assert_eq!(again.header("etag"), Some(etag.as_str()));
                }
            }
        }
    }
}

/// Browsers send one `Cookie` header of `; `-separated pairs (an HTTP/2 hop joins a header split
/// into crumbs with `; ` again, RFC 9113 §8.2.3), and that is the only separator: a comma may be
/// part of a value (RFC 6265 §5.2), so a cookie after one — from a value, or from a second field
/// the runtime joined with `, ` — is not read (`cookies`; a review found a planted value naming a
/// session signed the victim into the planter's account).
#[test]
fn cookies_are_separated_by_semicolons_only() {
    for mut stack in [Stack::monolith(), Stack::services()] {
        let user = stack.client("na");
        signed_up(&mut stack, &user, "cookies@example.com");
        let created = stack.send(user.post("/api/notes").json(json!({"title": "mine", "body": ""})).send());
        let id = created.json()["note"]["id"].as_str().unwrap().to_string();
        let jar = user.cookie_header();
        assert!(jar.contains("__Host-edgestack_session="), "{jar}");
        let anonymous = stack.client("na");
        let signed_in = [format!("theme=dark; {jar}"), format!("{jar}; theme=dark"), jar.replace("; ", ";")];
        let session = jar.split("; ").find(|pair| pair.starts_with("__Host-edgestack_session=")).unwrap();
        let not_read = [format!("theme=dark, {session}"), format!("theme=dark,{session}"), jar.replace("; ", ", ")];
        for (cookie, status) in signed_in.iter().map(|c| (c, 200)).chain(not_read.iter().map(|c| (c, 401))) {
            for path in ["/api/me".to_string(), format!("/api/notes/{id}")] {
                let response = stack.send(anonymous.get(&path).header("cookie", cookie).send());
                assert_eq!(response.status(), status, "{path} with {cookie:?}: {}", response.text());
            }
        }
    }
}

/// The read-your-writes cookie among others still sends the writer past a replica that has not
/// applied the write.
#[test]
fn the_consistency_cookie_among_others_still_reads_your_writes() {
    let mut stack = Stack::monolith();
    let writer = stack.client_in_region("eu");
    signed_up(&mut stack, &writer, "ryw@example.com");
    stack.advance(100.0);
    stack.set_lag("main", "eu", 5_000.0);
    let created = stack.send(writer.post("/api/notes").json(json!({"title": "fresh", "body": ""})).send());
    let id = created.json()["note"]["id"].as_str().unwrap().to_string();
    let consistency = writer.cookie("__Host-edgestack_consistency").expect("a write hands out the token");
    let session = writer.cookie("__Host-edgestack_session").unwrap();
    let stranger = stack.client_in_region("eu");
    let cookie = format!("__Host-edgestack_session={session}; theme=dark; __Host-edgestack_consistency={consistency}");
    let read = stack.send(stranger.get(&format!("/api/notes/{id}")).header("cookie", &cookie).send());
    assert_eq!(read.status(), 200, "{}", read.text());
    assert_eq!(read.db_targets(), ["replica-eu", "primary"], "the lagging replica was passed over");
}

/// On Workers each request header the API reads is a call from wasm into the runtime, so a
/// route reads only what it needs (docs/performance.md): a health check none, a public read
/// its read-your-writes cookie and its validator, whatever the client sends.
#[test]
fn each_route_reads_only_the_request_headers_it_needs() {
    let vars = vec![("EDGESTACK_ENV", "production".to_string())];
    let mut stack = Stack::new(Options { shape: Shape::Monolith, vars, ..Options::default() });
    let id = published(&mut stack);
    let front = stack.locations["na"].front.clone();
    let reader = stack.client("na");
    let mut reads_of = |call: crate::support::Call| {
        front.header_reads.borrow_mut().clear();
        let response = stack.send(call.send());
        assert!(response.status() < 400, "{}", response.text());
        std::mem::take(&mut *front.header_reads.borrow_mut())
    };
    let everything = |call: crate::support::Call| {
        call.header("Origin", "https://elsewhere.example")
            .header("Sec-Fetch-Site", "cross-site")
            .header("X-Edgestack-Client", "1")
            .header("If-None-Match", "\"x\"")
            .header("x-edgestack-region", "eu")
    };

    assert_eq!(reads_of(everything(reader.get("/api/health"))), Vec::<String>::new());
    assert_eq!(reads_of(everything(reader.get(&format!("/api/public/notes/{id}")))), ["cookie", "if-none-match"]);
}
