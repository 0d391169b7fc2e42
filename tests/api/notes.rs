use serde_json::json;

use crate::helpers::spawn_app;

#[test]
fn owner_creates_reads_edits_publishes_and_deletes_a_note() {
    let app = spawn_app();
    let (owner, _) = app.signed_up_client();

    let created = owner.send("POST", "/api/notes", Some(&json!({"title": "  First  ", "body": "hello"})));
    assert_eq!(created.status, 201, "{}", created.text());
    let note = created.json()["note"].clone();
    assert_eq!((note["title"].as_str(), note["published"].as_bool()), (Some("First"), Some(false)));
    let id = note["id"].as_str().unwrap();

    let read = owner.send("GET", &format!("/api/notes/{id}"), None);
    assert_eq!(read.json()["note"], note);

    let edited = owner.send("PATCH", &format!("/api/notes/{id}"), Some(&json!({"body": "changed"})));
    assert_eq!(edited.status, 200);
    assert_eq!(
        (edited.json()["note"]["title"].as_str(), edited.json()["note"]["body"].as_str()),
        (Some("First"), Some("changed"))
    );

    assert_eq!(app.get(&format!("/api/public/notes/{id}")).status, 404, "private until published");
    let published = owner.send("PUT", &format!("/api/notes/{id}/publication"), None);
    assert_eq!(published.json()["note"]["published"], true);
    let public = app.get(&format!("/api/public/notes/{id}"));
    assert_eq!(public.status, 200);
    assert_eq!(public.json()["note"]["body"], "changed");
    assert!(public.json()["note"].get("owner_id").is_none() && public.json()["note"].get("email").is_none());
    let feed = app.get("/api/public/notes").json();
    assert_eq!(feed["notes"][0]["id"], id);

    let unpublished = owner.send("DELETE", &format!("/api/notes/{id}/publication"), None);
    assert_eq!(unpublished.json()["note"]["published"], false);
    assert_eq!(app.get(&format!("/api/public/notes/{id}")).status, 404);

    assert_eq!(owner.send("DELETE", &format!("/api/notes/{id}"), None).status, 204);
    assert_eq!(owner.send("GET", &format!("/api/notes/{id}"), None).status, 404);
    assert_eq!(owner.send("DELETE", &format!("/api/notes/{id}"), None).status, 404);
}

#[test]
fn my_notes_page_newest_first_with_a_cursor() {
    let app = spawn_app();
    let (owner, _) = app.signed_up_client();
    let ids: Vec<String> = (0..5).map(|n| owner.create_note(&format!("note {n}"), "")).collect();

    let mut seen = Vec::new();
    let mut path = "/api/notes?limit=2".to_string();
    loop {
        let page = owner.send("GET", &path, None).json();
        let notes = page["notes"].as_array().unwrap();
        assert!(notes.len() <= 2);
        seen.extend(notes.iter().map(|n| n["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/notes?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.into_iter().rev().collect();
    assert_eq!(seen, newest_first);

    for bad in ["limit=0", "limit=101", "limit=x", "cursor=garbage"] {
        let response = owner.send("GET", &format!("/api/notes?{bad}"), None);
        assert_eq!(response.status, 400, "{bad}");
    }
}

#[test]
fn signed_out_callers_get_401_on_every_private_route() {
    let app = spawn_app();
    let (owner, _) = app.signed_up_client();
    let id = owner.create_note("mine", "");
    let anonymous = app.client();
    for (method, path, body) in [
        ("GET", "/api/me".to_string(), None),
        ("GET", "/api/notes".to_string(), None),
        ("POST", "/api/notes".to_string(), Some(json!({"title": "x"}))),
        ("GET", format!("/api/notes/{id}"), None),
        ("PATCH", format!("/api/notes/{id}"), Some(json!({"title": "x"}))),
        ("DELETE", format!("/api/notes/{id}"), None),
        ("PUT", format!("/api/notes/{id}/publication"), None),
        ("DELETE", format!("/api/notes/{id}/publication"), None),
        ("PUT", "/api/me/password".to_string(), Some(json!({"current_password": "x", "new_password": "yyyyyyyyy"}))),
        ("DELETE", "/api/sessions/current".to_string(), None),
    ] {
        let response = anonymous.send(method, &path, body.as_ref());
        assert_eq!((response.status, response.error_code().as_str()), (401, "unauthenticated"), "{method} {path}");
    }
}

/// Every private route, tried by a second user on the first user's note: no read, no write.
#[test]
fn two_users_never_see_or_change_each_others_notes() {
    let app = spawn_app();
    let (alice, _) = app.signed_up_client();
    let (mallory, _) = app.signed_up_client();
    let private_id = alice.create_note("alice private", "secret");
    let public_id = alice.create_note("alice public", "hello");
    alice.send("PUT", &format!("/api/notes/{public_id}/publication"), None);
    let mallory_note = mallory.create_note("mallory", "");

    for id in [&private_id, &public_id] {
        for (method, path, body) in [
            ("GET", format!("/api/notes/{id}"), None),
            ("PATCH", format!("/api/notes/{id}"), Some(json!({"title": "pwned"}))),
            ("DELETE", format!("/api/notes/{id}"), None),
            ("PUT", format!("/api/notes/{id}/publication"), None),
            ("DELETE", format!("/api/notes/{id}/publication"), None),
        ] {
            let response = mallory.send(method, &path, body.as_ref());
            assert_eq!((response.status, response.error_code().as_str()), (404, "not_found"), "{method} {path}");
        }
    }
    let mallory_list = mallory.send("GET", "/api/notes", None).json();
    let listed: Vec<&str> =
        mallory_list["notes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![mallory_note.as_str()]);

    // Alice's notes are untouched: same titles, same publication state.
    let alice_list = alice.send("GET", "/api/notes", None).json();
    let states: Vec<(String, bool)> = alice_list["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["title"].as_str().unwrap().to_string(), n["published"].as_bool().unwrap()))
        .collect();
    assert_eq!(states, vec![("alice public".to_string(), true), ("alice private".to_string(), false)]);
    // A private note is exactly as missing publicly as a note that never existed.
    let private = app.get(&format!("/api/public/notes/{private_id}"));
    let missing = app.get(&format!("/api/public/notes/{}", "A".repeat(22)));
    assert_eq!((private.status, private.text()), (missing.status, missing.text()));
}

#[test]
fn note_input_is_validated() {
    let app = spawn_app();
    let (owner, _) = app.signed_up_client();
    for (body, code) in [
        (json!({"title": ""}), "invalid_title"),
        (json!({"title": "x".repeat(201)}), "invalid_title"),
        (json!({"title": "t", "body": "x".repeat(20_001)}), "invalid_body_text"),
        (json!({"title": "t", "owner_id": "someone-else"}), "invalid_body"),
        (json!({"title": ["array"]}), "invalid_body"),
    ] {
        let response = owner.send("POST", "/api/notes", Some(&body));
        assert_eq!((response.status, response.error_code().as_str()), (400, code));
    }
    let id = owner.create_note("t", "");
    let response = owner.send("PATCH", &format!("/api/notes/{id}"), Some(&json!({})));
    assert_eq!(response.error_code(), "nothing_to_change");
    assert_eq!(owner.send("GET", "/api/notes/not-an-id", None).status, 404);
}
