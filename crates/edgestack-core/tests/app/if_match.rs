//! `If-Match` on a note's routes (RFC 9110 §13.1.1): a change made on top of a version someone
//! else has since replaced is refused with 412, never applied over theirs — in both shapes, for
//! every route that reads or changes one note. And `If-None-Match` there (§13.1.2): a read of
//! the version named is a 304, a change to it a 412.

use serde_json::{Value, json};

use crate::support::{Call, Client, Shape, Stack, each_shape, one_user_near_and_far, signed_up_user};

/// The note as its owner reads it, and the read's `ETag`.
fn read(stack: &mut Stack, owner: &Client, id: &str) -> (Value, String) {
    let response = stack.send(owner.get(&format!("/api/notes/{id}")).send());
    assert_eq!(response.status(), 200, "{}", response.text());
    let etag = response.header("etag").expect("a note's read has an ETag").to_string();
    (response.json()["note"].clone(), etag)
}

type Change = fn(&Client, &str) -> Call;

/// Every route that changes one note, by name: `(name, call on the note's path)`.
const CHANGES: [(&str, Change); 4] = [
    ("edit", |client, path| client.patch(path).json(json!({"body": "changed"}))),
    ("publish", |client, path| client.put(&format!("{path}/publication"))),
    ("unpublish", |client, path| client.delete(&format!("{path}/publication"))),
    ("delete", |client, path| client.delete(path)),
];

#[test]
fn a_note_is_tagged_by_its_version_and_each_change_gives_a_new_tag() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "tags@example.com");
        let created = stack.send(owner.post("/api/notes").json(json!({"title": "t"})).send());
        let id = created.json()["note"]["id"].as_str().unwrap().to_string();
        let created_tag = created.header("etag").expect("a created note has an ETag").to_string();
        let (note, tag) = read(&mut stack, &owner, &id);
        assert_eq!(tag, created_tag);
        assert_eq!(tag, format!("\"{}\"", note["updated_at"]), "the tag is the version docs/api.md names");
        let mut seen = vec![tag];
        for (change, call) in &CHANGES[..3] {
            let answer = stack.send(call(&owner, &format!("/api/notes/{id}")).send());
            assert_eq!(answer.status(), 200, "{change}: {}", answer.text());
            let tag = answer.header("etag").expect("a changed note has an ETag").to_string();
            assert_eq!(tag, format!("\"{}\"", answer.json()["note"]["updated_at"]), "{change}");
            assert!(!seen.contains(&tag), "{change} kept a tag already given: {tag} in {seen:?}");
            assert_eq!(read(&mut stack, &owner, &id).1, tag, "{change}: a read gives the same tag");
            seen.push(tag);
        }
    });
}

/// Publishing a published note, or unpublishing a private one, changes nothing — its tag
/// included — so a client that repeats the request (PUT and DELETE are idempotent, RFC 9110
/// §9.2.2), or another holding that version's tag, is not refused as if the note had changed.
#[test]
fn a_repeated_publication_change_keeps_the_version() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "again@example.com");
        let created = stack.send(owner.post("/api/notes").json(json!({"title": "t"})).send());
        let id = created.json()["note"]["id"].as_str().unwrap().to_string();
        let path = format!("/api/notes/{id}/publication");
        for (change, call) in [("publish", owner.put(&path)), ("unpublish", owner.delete(&path))] {
            let first = stack.send(call.send());
            assert_eq!(first.status(), 200, "{change}: {}", first.text());
            let tag = first.header("etag").unwrap().to_string();
            let again_call = if change == "publish" { owner.put(&path) } else { owner.delete(&path) };
            let again = stack.send(again_call.header("if-match", &tag).send());
            assert_eq!(again.status(), 200, "{change} again with the tag it gave: {}", again.text());
            assert_eq!(again.header("etag"), Some(tag.as_str()), "{change} again moved the version");
            assert_eq!(again.json()["note"], first.json()["note"], "{change} again changed the note");
            assert_eq!(read(&mut stack, &owner, &id).1, tag);
        }
    });
}

/// A `PATCH` to the values the note already has changes nothing, its tag included: a tab that
/// saves unchanged text must not make another tab's save of a real change a `412`. A real
/// change after it (with the tag both tabs hold) applies and moves the version.
#[test]
fn an_edit_to_the_values_the_note_has_keeps_the_version() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "same@example.com");
        let created = stack.send(owner.post("/api/notes").json(json!({"title": "t", "body": "b"})).send());
        let id = created.json()["note"]["id"].as_str().unwrap().to_string();
        let path = format!("/api/notes/{id}");
        let (note, tag) = read(&mut stack, &owner, &id);
        stack.advance(5.0);

        for same in [json!({"title": "t"}), json!({"body": "b"}), json!({"title": "t", "body": "b"})] {
            let saved = stack.send(owner.patch(&path).header("if-match", &tag).json(same.clone()).send());
            assert_eq!(saved.status(), 200, "{same}: {}", saved.text());
            assert_eq!(saved.header("etag"), Some(tag.as_str()), "{same} moved the version");
            assert_eq!(saved.json()["note"], note, "{same} changed the note");
        }
        let changed = stack.send(owner.patch(&path).header("if-match", &tag).json(json!({"body": "B"})).send());
        assert_eq!(changed.status(), 200, "the other tab's change still applies: {}", changed.text());
        assert_ne!(changed.header("etag"), Some(tag.as_str()));
        assert_eq!(read(&mut stack, &owner, &id).0["body"], "B");
        // A change of case is a change (byte comparison).
        let recased = stack.send(owner.patch(&path).json(json!({"body": "b"})).send());
        assert_ne!(recased.header("etag"), changed.header("etag"));
    });
}

/// A change whose request's clock is behind the version it lands on (a far location's, applied
/// after a near one's) still moves the version: otherwise two versions would share a tag, and an
/// `If-Match` naming the first would admit a change on top of the second.
#[test]
fn a_change_applied_out_of_clock_order_still_gets_a_new_tag() {
    for shape in [Shape::Monolith, Shape::Services] {
        let (mut stack, near, far) = one_user_near_and_far(shape, "order@example.com");
        let id = near.create_note(&mut stack, "t", "");
        let path = format!("/api/notes/{id}");
        // The near client edits; the far one edits, publishes, then unpublishes: each a real
        // change (a repeated publication change, or an edit to the values the note has,
        // changes nothing, so it keeps the version).
        for (change, call) in &CHANGES[..3] {
            stack.advance(1_000.0);
            let edit = near.patch(&path).json(json!({"body": format!("near, before the far {change}")}));
            let (far_answer, near_answer) = stack.overlapping(call(&far, &path), 5.0, edit);
            let (near_tag, far_tag) = (near_answer.header("etag").unwrap(), far_answer.header("etag").unwrap());
            assert_ne!(near_tag, far_tag, "{shape:?} {change}: two versions, one tag");
            assert_eq!(read(&mut stack, &near, &id).1, far_tag, "{shape:?} {change}: the far change applied last");
        }
    }
}

#[test]
fn a_change_on_top_of_a_replaced_version_is_refused_and_changes_nothing() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "writer@example.com");
        for (change, call) in CHANGES {
            let id = owner.create_note(&mut stack, "t", "original");
            let path = format!("/api/notes/{id}");
            let (_, stale) = read(&mut stack, &owner, &id);
            stack.advance(1.0);
            // Another tab replaces the version `stale` names.
            let replaced = stack.send(owner.patch(&path).json(json!({"title": "theirs"})).send());
            assert_eq!(replaced.status(), 200);
            let (before, current) = read(&mut stack, &owner, &id);
            let weak = format!("W/{current}");
            let unknown = format!("\"{}\"", i64::MAX);
            let plus = format!("\"+{}\"", current.trim_matches('"'));
            for tag in [stale.as_str(), weak.as_str(), unknown.as_str(), plus.as_str(), "\"x\""] {
                let refused = stack.send(call(&owner, &path).header("if-match", tag).send());
                assert_eq!(
                    (refused.status(), refused.error_code().as_str()),
                    (412, "precondition_failed"),
                    "{change} with If-Match: {tag}"
                );
                assert_eq!(read(&mut stack, &owner, &id), (before.clone(), current.clone()), "{change} changed it");
            }
            for malformed in ["abc", "\"abc", "\"a\"\"b\"", "\"x\" \"y\"", "W/", "\"x\", *"] {
                let refused = stack.send(call(&owner, &path).header("if-match", malformed).send());
                assert_eq!(
                    (refused.status(), refused.error_code().as_str()),
                    (400, "invalid_if_match"),
                    "{change} with If-Match: {malformed:?}"
                );
                assert_eq!(read(&mut stack, &owner, &id), (before.clone(), current.clone()), "{change} changed it");
            }
            // Checked before anything else: before a body that is not even JSON (a review
            // found PATCH answering invalid_json here), before a body sent where none is read.
            let broken = call(&owner, &path).header("if-match", "abc").body(b"{\"title\":");
            let refused = stack.send(broken.send());
            assert_eq!(refused.error_code(), "invalid_if_match", "{change} with a broken body too");
            let listed = format!("{stale}, \"x\", {current}");
            let applied = stack.send(call(&owner, &path).header("if-match", &listed).send());
            assert!(matches!(applied.status(), 200 | 204), "{change} with the current tag listed: {}", applied.text());
        }
    });
}

#[test]
fn if_match_star_needs_the_note_and_a_note_not_yours_is_404_whatever_the_tag() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "star@example.com");
        let other = signed_up_user(&mut stack, "other@example.com");
        let id = owner.create_note(&mut stack, "t", "");
        let (note, tag) = read(&mut stack, &owner, &id);
        for (change, call) in CHANGES {
            for path in [format!("/api/notes/{id}"), format!("/api/notes/{}", "A".repeat(22))] {
                for if_match in ["*", tag.as_str(), "\"x\""] {
                    let answer = stack.send(call(&other, &path).header("if-match", if_match).send());
                    assert_eq!(
                        (answer.status(), answer.error_code().as_str()),
                        (404, "not_found"),
                        "{change} {path} by another user, If-Match: {if_match}"
                    );
                }
            }
        }
        assert_eq!(read(&mut stack, &owner, &id), (note, tag.clone()), "another user's attempts changed nothing");
        // The owner's read is conditional too: a tag it does not satisfy is 412, `*` is any version.
        let path = format!("/api/notes/{id}");
        for (if_match, status) in [("\"x\"", 412), ("*", 200), (tag.as_str(), 200)] {
            let answer = stack.send(owner.get(&path).header("if-match", if_match).send());
            assert_eq!(answer.status(), status, "GET with If-Match: {if_match}");
        }
        let starred = stack.send(owner.patch(&path).header("if-match", "*").json(json!({"title": "any"})).send());
        assert_eq!(starred.status(), 200);
        // The Workers runtime drops an empty If-Match before the Worker sees it: none it is, here too.
        for blank in ["", " \t "] {
            let unconditional =
                stack.send(owner.patch(&path).header("if-match", blank).json(json!({"body": "b"})).send());
            assert_eq!(unconditional.status(), 200, "If-Match: {blank:?}: {}", unconditional.text());
        }
        assert_eq!(stack.send(owner.delete(&path).header("if-match", "*").send()).status(), 204);
        let gone = stack.send(owner.delete(&path).header("if-match", "*").send());
        assert_eq!((gone.status(), gone.error_code().as_str()), (404, "not_found"), "`*` on a deleted note");
    });
}

/// Two clients edit the same version at once; the far one's change reaches the primary last.
/// Without `If-Match` the last write wins silently; with it exactly one applies and the other
/// learns it lost (412, or 404 when the first deleted the note) — on every route.
#[test]
fn of_two_changes_racing_from_one_version_exactly_one_applies() {
    for shape in [Shape::Monolith, Shape::Services] {
        let (mut stack, near, far) = one_user_near_and_far(shape, "racer@example.com");
        for (change, call) in CHANGES {
            let id = near.create_note(&mut stack, "t", "original");
            let path = format!("/api/notes/{id}");
            if change == "unpublish" {
                // Public first, so the unpublish is a change (of a private note it is none).
                assert_eq!(stack.send(near.put(&format!("{path}/publication")).send()).status(), 200);
            }
            let (_, tag) = read(&mut stack, &near, &id);
            let far_edit = far.patch(&path).header("if-match", &tag).json(json!({"body": "far"}));
            let (far_answer, near_answer) =
                stack.overlapping(far_edit, 0.0, call(&near, &path).header("if-match", &tag));
            let statuses = (near_answer.status(), far_answer.status());
            let expected_far = if change == "delete" { 404 } else { 412 };
            assert!(matches!(near_answer.status(), 200 | 204), "{shape:?} {change}: {statuses:?}");
            assert_eq!(far_answer.status(), expected_far, "{shape:?} {change}: {}", far_answer.text());
            let stored = stack.send(near.get(&path).send());
            if change == "delete" {
                assert_eq!(stored.status(), 404, "{shape:?}");
            } else {
                assert_eq!(
                    stored.json()["note"],
                    near_answer.json()["note"],
                    "{shape:?} {change}: the far edit applied"
                );
            }
        }
    }
}

#[test]
fn if_none_match_revalidates_an_owners_read_and_refuses_a_change_to_the_version_named() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "none-match@example.com");
        for (change, call) in CHANGES {
            let id = owner.create_note(&mut stack, "t", "original");
            let path = format!("/api/notes/{id}");
            let (before, current) = read(&mut stack, &owner, &id);
            let weak = format!("W/{current}");
            for (if_none_match, status) in [(current.as_str(), 304), (weak.as_str(), 304), ("*", 304), ("\"0\"", 200)] {
                let answer = stack.send(owner.get(&path).header("if-none-match", if_none_match).send());
                assert_eq!(answer.status(), status, "GET with If-None-Match: {if_none_match}");
                assert_eq!(answer.header("etag"), Some(current.as_str()), "If-None-Match: {if_none_match}");
                if status == 304 {
                    assert!(answer.0.body.is_empty());
                }
            }
            // If-Match is evaluated first (§13.2.2): a version it refuses is 412 even when named.
            let both = owner.get(&path).header("if-match", "\"0\"").header("if-none-match", &current);
            assert_eq!(stack.send(both.send()).status(), 412);
            for if_none_match in [current.as_str(), weak.as_str(), "*"] {
                let refused = stack.send(call(&owner, &path).header("if-none-match", if_none_match).send());
                assert_eq!(
                    (refused.status(), refused.error_code().as_str()),
                    (412, "precondition_failed"),
                    "{change} with If-None-Match: {if_none_match}"
                );
                // The message names the field that can have refused it, not If-Match alone.
                let message = refused.json()["error"]["message"].as_str().unwrap_or_default().to_string();
                assert!(message.contains("If-None-Match"), "{change}: {message}");
                assert_eq!(read(&mut stack, &owner, &id), (before.clone(), current.clone()), "{change} changed it");
            }
            // A tag of another version, or a malformed field (which names nothing, as on the public
            // reads): the change applies.
            let unnamed: &[&str] = if change == "delete" { &["not a tag"] } else { &["\"0\"", "not a tag"] };
            for if_none_match in unnamed {
                let applied = stack.send(call(&owner, &path).header("if-none-match", if_none_match).send());
                assert!(
                    matches!(applied.status(), 200 | 204),
                    "{change}, If-None-Match {if_none_match}: {}",
                    applied.text()
                );
            }
        }
    });
}

/// A CDN or proxy that compresses a response may turn its strong `ETag` weak (`W/"…"`, as
/// Cloudflare documents for compression), and `If-Match` never matches a weak tag: a client
/// sending back the tag it received would have every edit refused. So every answer that tags
/// one note forbids transforming it (`no-transform`, RFC 9111 §5.2.2.6), and stays private.
#[test]
fn every_answer_that_tags_a_note_forbids_the_transformations_that_weaken_its_tag() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "no-transform@example.com");
        let created = stack.send(owner.post("/api/notes").json(json!({"title": "t"})).send());
        let id = created.json()["note"]["id"].as_str().unwrap().to_string();
        let path = format!("/api/notes/{id}");
        let (_, tag) = read(&mut stack, &owner, &id);
        let mut answers = vec![("create", created), ("read", stack.send(owner.get(&path).send()))];
        answers.push(("revalidated read", stack.send(owner.get(&path).header("If-None-Match", &tag).send())));
        for (change, call) in &CHANGES[..3] {
            answers.push((change, stack.send(call(&owner, &path).send())));
        }
        for (name, answer) in answers {
            assert!(answer.header("etag").is_some(), "{name}: {}", answer.text());
            assert_eq!(answer.header("cache-control"), Some("private, no-store, no-transform"), "{name}");
        }
    });
}
